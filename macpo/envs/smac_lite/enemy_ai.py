"""Stand-in for SMAC's enemy "built-in AI" (the game's AI at difficulty 7 plus a map trigger
that attack-moves every enemy to the agents' start).

Per step, each enemy fighter picks one target among the agents it can hit, in this order:
1. its current target while that stays valid (alive and within sight);
2. the nearest agent within weapon reach;
3. the agent that hit it last step (it "switches to whoever attacks it" when idle);
4. once it has reached the attack point: the nearest visible agent, which it walks toward
   without committing to it;
5. none: it walks on to the attack point.
Rule 4 waits for the attack point because an attack-move does not divert to units it merely
sees: with rule 4 active on the way, every enemy converged on the agent nearest to it (the
front one) and the stand-in out-focused a scripted focus-fire policy on 3m and 8m, which
SMAC's built-in AI does not.
An enemy healer (Medivac) follows its army: it targets the nearest damaged friendly fighter,
else the nearest friendly fighter; it heals when in heal range and the target is damaged.
Targets are slot indices (agents 0..N-1, enemies N..U-1) or -1.
"""

from __future__ import annotations

import torch

from macpo.envs.smac_lite.combat import nearest
from macpo.envs.smac_lite.roster import Roster

#: added to the distance of undamaged friends, so a healer prefers any damaged one
_UNDAMAGED_PENALTY = 1e4


def choose_enemy_targets(
    dist: torch.Tensor,
    alive: torch.Tensor,
    damaged: torch.Tensor,
    prev_target: torch.Tensor,
    last_attacker: torch.Tensor,
    arrived: torch.Tensor,
    roster: Roster,
    sight_range: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets [B, E] of the enemies this step, and the ones they keep for the next step.

    From pairwise distances ``dist`` [B, U, U], ``alive`` and ``damaged`` [B, U] (bool), the
    targets the enemies kept [B, E], per enemy the slot that hit it last step [B, E] (-1: none)
    and whether it has reached the attack point [B, E] (bool).
    """
    n = roster.n_agents
    d = dist[:, n:]  # [B, E, U]
    alive_dst = alive.unsqueeze(1)  # [B, 1, U]

    visible = roster.can_attack[n:] & alive_dst & (d < sight_range)  # [B, E, U]
    in_reach = visible & (d <= roster.reach[n:])

    def still_visible(slot: torch.Tensor) -> torch.Tensor:  # [B, E] slot or -1 -> bool
        return (slot >= 0) & visible.gather(2, slot.clamp(min=0).unsqueeze(-1)).squeeze(-1)

    closest_in_reach = nearest(in_reach, d)
    closest_visible = nearest(visible, d)
    committed = torch.where(
        still_visible(prev_target),
        prev_target,
        torch.where(
            closest_in_reach >= 0,
            closest_in_reach,
            torch.where(still_visible(last_attacker), last_attacker, -1),
        ),
    )
    fighter_target = torch.where(committed >= 0, committed, torch.where(arrived, closest_visible, -1))

    friends = roster.can_heal[n:] & alive_dst  # [B, E, U]
    heal_target = nearest(friends, d + _UNDAMAGED_PENALTY * (~damaged).unsqueeze(1))
    healer = roster.healer[n:]
    return torch.where(healer, heal_target, fighter_target), torch.where(healer, -1, committed)
