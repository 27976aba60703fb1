"""Stand-in for SMAC's enemy "built-in AI" (the game's AI at difficulty 7 plus a map trigger
that attack-moves every enemy to the agents' start).

An attack-moving StarCraft II unit chooses its targets by the game's automatic targeting
(Liquipedia, "Automatic Targeting"); per step each enemy fighter, among the agents it can hit:
1. keeps its current target while that is alive, within weapon reach, and no agent of higher
   priority is within weapon reach ("a target is kept until it dies, leaves the weapon range or
   a higher-priority target enters the weapon range");
2. otherwise acquires the best agent within its scan range (max(5, weapon range + 0.5), edge
   to edge): priority first, then the closest. Priority: an agent attacking this enemy (it
   fired or stands engaged on it) > an armed agent (a "threat": it can fire back; the Medivac
   cannot) > an unarmed one. It walks to that target and attacks it;
3. once it has reached the attack point with nothing in scan range: the nearest visible agent,
   which it walks toward (the AI's army hunts what it sees once the attack-move is done);
4. none: it walks on to the attack point (an attack-move does not divert to units beyond scan
   range).
Rule 1's "higher priority" is what makes an enemy turn on the agents shooting it instead of
chasing a retreating wounded agent out of the fight (see docs/smac_lite.md).
An enemy healer (Medivac) follows its army: it targets the nearest damaged friendly fighter,
else the nearest friendly fighter; it heals when in heal range and the target is damaged.
Targets are slot indices (agents 0..N-1, enemies N..U-1) or -1.
"""

from __future__ import annotations

import torch

from macpo.envs.smac_lite.combat import nearest
from macpo.envs.smac_lite.roster import RANGE_TOLERANCE, Roster

#: added to the distance of undamaged friends, so a healer prefers any damaged one
_UNDAMAGED_PENALTY = 1e4
#: per priority level subtracted from a candidate's distance (larger than any distance on a map)
_PRIORITY_STEP = 1e4
__all__ = ["RANGE_TOLERANCE", "choose_enemy_targets"]


def choose_enemy_targets(
    dist: torch.Tensor,
    alive: torch.Tensor,
    damaged: torch.Tensor,
    prev_target: torch.Tensor,
    engaged_on: torch.Tensor,
    ordered_on: torch.Tensor,
    arrived: torch.Tensor,
    roster: Roster,
    sight_range: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets [B, E] of the enemies this step, and the ones they keep for the next step.

    From the enemies' distances to every unit ``dist`` [B, E, U], taken to where the agents are
    going this step (the game re-evaluates every game loop, so a target that walks out of weapon
    range during the step is lost during the step), ``alive`` and ``damaged`` [B, U] (bool), the
    targets the enemies kept [B, E], per unit the slot it was attacking at the end of the last step
    [B, U] and the slot each agent attacks this step [B, N] (-1: none; both count as "attacking
    it"), and whether each enemy has reached the attack point [B, E] (bool).
    """
    n = roster.n_agents
    d = dist  # [B, E, U]
    invalid = roster.enemy_cannot_attack | ~alive.unsqueeze(1)  # [B, E, U] not a target for this enemy
    out_of_reach = invalid | (d > roster.enemy_reach_tol)
    out_of_scan = invalid | (d > roster.enemy_scan)
    out_of_sight = invalid | (d >= sight_range)

    slots = roster.enemy_slots  # [1, E, 1]
    attacking_me = (engaged_on.unsqueeze(1) == slots) | (
        torch.cat([ordered_on, engaged_on[:, n:]], 1).unsqueeze(1) == slots
    )  # [B, E, U] (enemies' own entries only repeat the first test)
    priority = attacking_me.float() + roster.armed_float  # [B, E, U]: 2 attacking, 1 armed, 0 unarmed

    prev = prev_target.clamp(min=0).unsqueeze(-1)  # [B, E, 1]
    prev_in_reach = (prev_target >= 0) & ~out_of_reach.gather(2, prev).squeeze(-1)
    best_in_reach = priority.masked_fill(out_of_reach, -1.0).amax(-1)  # [B, E]
    keep = prev_in_reach & (priority.gather(2, prev).squeeze(-1) >= best_in_reach)

    acquired = nearest(out_of_scan, d - _PRIORITY_STEP * priority)  # [B, E] best priority, then closest
    committed = torch.where(keep, prev_target, acquired)
    fighter_target = torch.where(committed >= 0, committed, nearest(out_of_sight, d).masked_fill_(~arrived, -1))

    if not roster.enemy_healers:
        return fighter_target, committed
    not_friends = ~(roster.can_heal[n:] & alive.unsqueeze(1))  # [B, E, U]
    heal_target = nearest(not_friends, d + _UNDAMAGED_PENALTY * (~damaged).unsqueeze(1))
    healer = roster.healer[n:]
    return torch.where(healer, heal_target, fighter_target), torch.where(healer, -1, committed)
