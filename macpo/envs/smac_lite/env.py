"""SMAC without StarCraft II: B battles of one SMAC map stepped at once on torch tensors.

Interfaces (sizes, action space and availability, observation and state layouts, reward,
episode end) are SMAC's defaults as listed in ``docs/smac.md``, so a network
trained here has the shapes it would have on the real game. The battle itself is a small
model of StarCraft II combat (``units.py`` stats, ``combat.py`` rules, ``enemy_ai.py``).

Time: one env step is SMAC's 8 game loops at 22.4 loops per second ("faster" speed), i.e.
``STEP_SECONDS`` = 0.357 s, applied to every speed, cooldown, heal rate and regeneration.
There are no sub-steps: within a step units first move (a move order walks toward a point
2 units away, an attack or heal order walks toward where its target goes this step until it is
in reach), ground bodies are pushed apart, then every unit whose target is in reach fires once
its cooldown has run out and, if it walked, its walk plus the weapon's damage point are over,
when that moment falls within the step; the leftover cooldown carries the exact firing time
over (every weapon period exceeds one step). The enemy AI (``enemy_ai.py``) picks targets
against the agents' positions after their moves (sim_version 3, docs/smac_lite.md).
Hits land simultaneously (the Zealot's second hit as a second phase), then healing, then
deaths, shield regeneration and cooldowns. A ``stop``ped agent holds position and fires at
the nearest enemy once it is in reach (a Medivac heals the nearest damaged ally), as an idle
StarCraft II unit does. An unavailable action acts as ``stop`` (no-op for the dead;
``strict_actions=True`` raises instead, at the cost of a host sync). SMAC offers attacks the
unit cannot land (a Marauder on the air Medivac): the unit walks toward the target, no damage.

Layouts (``N`` agents, ``E`` enemies, ``A = 6 + E`` actions, ``s`` = 1 shield column on a
Protoss side else 0, ``k`` unit-type bits):
- obs [B, N, O]: 4 move flags (N, S, E, W); per enemy [attackable, dist, dx, dy, health,
  (shield), type(k)] / 9 for distances; per other ally [visible, dist, dx, dy, health,
  (shield), type(k)]; own [health, (shield), type(k)]. Unseen rows and dead agents are 0.
- state [B, S]: per agent [health, cooldown (Medivac: energy / 200), x, y, (shield), type(k)];
  per enemy [health, x, y, (shield), type(k)]; then the last actions' one-hots [N * A].
- actions: 0 no-op (dead agents only), 1 stop, 2-5 move N/S/E/W, 6+i attack enemy i
  (a Medivac: heal ally i).
Reward: SMAC's dense positive reward |enemy health+shield lost + 10 per kill| (+200 on a win)
scaled so that its maximum over an episode is 20; like SMAC it takes the absolute value, so
enemy healing and shield regeneration count too. A timeout is a draw (truncated, not won);
on maps with Medivacs a side left with only Medivacs has lost.
Battles differ by the units' spawn positions (uniform jitter around the map's formation).
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F

from macpo.envs.base import BatchedEnv, EnvInfo
from macpo.envs.smac_lite.combat import (
    advance_cooldown,
    apply_hits,
    heal,
    nearest,
    regenerate_shields,
    separate,
    step_toward,
)
from macpo.envs.smac_lite.enemy_ai import choose_enemy_targets
from macpo.envs.smac_lite.maps import MapSpec, get_map
from macpo.envs.smac_lite.roster import Roster
from macpo.envs.smac_lite.units import DAMAGE_POINT

#: version of the battle rules; conf/env/<map>.yaml's ``sim_version`` must match it. 1: the first
#: stand-in; 2: StarCraft II's automatic targeting, firing after a walk, chasing, collisions,
#: Medivac rates at "faster" speed; 3: the enemy AI judges weapon range during the step, and an
#: agent's attack order makes it a threat at once (docs/smac_lite.md).
SIM_VERSION = 3
GAME_LOOPS_PER_SECOND = 22.4
GAME_LOOPS_PER_STEP = 8
STEP_SECONDS = GAME_LOOPS_PER_STEP / GAME_LOOPS_PER_SECOND
SIGHT_RANGE = 9.0
SHOOT_RANGE = 6.0  # SMAC's attack/heal availability range (centre distance)
MOVE_AMOUNT = 2.0
NO_OP, STOP, MOVE_NORTH, MOVE_SOUTH, MOVE_EAST, MOVE_WEST = range(6)
N_NON_ATTACK_ACTIONS = 6
REWARD_PER_KILL = 10.0
REWARD_WIN = 200.0
REWARD_SCALE = 20.0  # the episode's maximum scaled reward
ARRIVAL_RADIUS = 1.5  # an enemy this close to the attack point has arrived there
_MOVE_DIRECTIONS = ((0.0, 1.0), (0.0, -1.0), (1.0, 0.0), (-1.0, 0.0))  # N, S, E, W

#: The battle's tensors never need gradients, and at the training batch (B = 8) a step is a few
#: hundred small ops whose cost is mostly dispatch: running them below PyTorch's autograd layers
#: (same kernels, bit-identical results, ordinary tensors out, unlike inference_mode's) makes a
#: step ~1.3x faster. A private torch guard; without it the code runs as is.
_BELOW_AUTOGRAD = getattr(torch._C, "_AutoDispatchBelowADInplaceOrView", contextlib.nullcontext)


def _below_autograd(method):
    """Run ``method`` with the autograd dispatch layers skipped (see ``_BELOW_AUTOGRAD``)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _BELOW_AUTOGRAD():
            return method(*args, **kwargs)

    return wrapper


class SmacLiteEnv(BatchedEnv):
    """B lock-step battles of one SMAC map; see the module docstring for rules and layouts.

    Args:
        map_name: a SMAC map of ``maps.MAPS`` (case-insensitive), or a ``MapSpec`` of a new one.
        n_envs: number of parallel battles B.
        device: torch device of every tensor and of the random generator.
        seed: seed of the generator (spawn jitter); ``None`` draws a nondeterministic one.
        spawn_jitter: each unit starts uniformly within +-``spawn_jitter`` of its formation slot.
        strict_actions: raise ValueError on an unavailable action (costs a host sync per step).
    """

    def __init__(
        self,
        map_name: str | MapSpec,
        n_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        spawn_jitter: float = 0.5,
        strict_actions: bool = False,
    ):
        if not isinstance(n_envs, int) or isinstance(n_envs, bool) or n_envs <= 0:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
        if not spawn_jitter >= 0:
            raise ValueError(f"env.spawn_jitter must be >= 0, got {spawn_jitter!r}")
        self.spec = get_map(map_name)
        self.n_envs = n_envs
        self.device = torch.device(device)
        self.spawn_jitter = float(spawn_jitter)
        self.strict_actions = bool(strict_actions)
        self.roster = r = Roster(self.spec, self.device)
        n, e = r.n_agents, r.n_enemies
        self.n_agents, self.n_enemies, self.n_units = n, e, r.n_units
        self.n_actions = N_NON_ATTACK_ACTIONS + e

        bits = r.type_onehot.shape[1]
        obs_shape = (
            len(_MOVE_DIRECTIONS)
            + e * (5 + r.enemy_shield_bits + bits)
            + (n - 1) * (5 + r.agent_shield_bits + bits)
            + (1 + r.agent_shield_bits + bits)
        )
        state_shape = n * (4 + r.agent_shield_bits + bits) + e * (3 + r.enemy_shield_bits + bits) + n * self.n_actions
        self._env_info = EnvInfo(
            n_agents=n,
            n_actions=self.n_actions,
            obs_shape=obs_shape,
            state_shape=state_shape,
            episode_limit=self.spec.episode_limit,
            obs_dtype=torch.float16,
        )
        max_reward = REWARD_PER_KILL * e + REWARD_WIN + float((r.max_health + r.max_shield)[n:].sum())
        self.reward_scale = REWARD_SCALE / max_reward

        dev = self.device
        self._spawn = torch.tensor(self.spec.spawn_positions(), device=dev)  # [U, 2]
        self._attack_point = torch.tensor(self.spec.attack_point, device=dev)  # [2]
        self._bounds = torch.tensor([self.spec.width, self.spec.height], device=dev)  # [2]
        self._origin = torch.zeros(2, device=dev)  # [2] lower corner of the map
        self._half_bounds_t = (self._bounds / 2).view(2, 1)  # [2, 1]
        self._bounds_t = self._bounds.view(2, 1)  # [2, 1]
        self._directions = torch.tensor(_MOVE_DIRECTIONS, device=dev)  # [4, 2]
        self._move_offsets = MOVE_AMOUNT * self._directions  # [4, 2] (exact: MOVE_AMOUNT * 0 or +-1)
        move_table = torch.zeros(self.n_actions, 2, device=dev)
        move_table[MOVE_NORTH : MOVE_WEST + 1] = self._move_offsets
        self._action_offset = move_table  # [A, 2] where each action's move order points, from the unit
        self._speed_dt = r.speed * STEP_SECONDS  # [U] distance a unit walks in a step
        self._cooldown_feature_scale = torch.where(
            r.max_cooldown_loops > 0, GAME_LOOPS_PER_SECOND / r.max_cooldown_loops.clamp(min=1e-9), 0.0
        )  # [U]: seconds -> fraction of SMAC's max cooldown
        self._is_enemy = ~r.is_agent  # [U]
        self._action_ids = torch.arange(self.n_actions, device=dev)  # [A]
        self._obs_columns, self._state_columns = self._layouts()

        self.generator = torch.Generator(device=dev)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self.reset()

    @property
    def env_info(self) -> EnvInfo:
        return self._env_info

    def _layouts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Column indices that cut SMAC's obs [N, O] and state [S] (minus the last actions) out of
        the feature-major tensors ``_observe`` builds in a few large ops (every unit gets every
        feature, shields included; the index puts SMAC's columns in SMAC's order).

        ``_observe``'s per-agent tensor is [move flags (4), features [6 + k, U] flattened]: for each
        unit seen by the agent [flag, dist, dx, dy, health, shield, type(k)] (its own column holds
        its own health, shield, type); its per-unit state tensor is [health, cooldown, x, y, shield,
        type(k)] x U, flattened.
        """
        n, u, r = self.n_agents, self.n_units, self.roster
        k = r.type_onehot.shape[1]
        bits = [6 + i for i in range(k)]

        def col(feature: int, unit: int) -> int:
            return 4 + feature * u + unit

        seen_features = {s: [0, 1, 2, 3, 4] + [5] * s + bits for s in (0, 1)}
        rows = []
        for i in range(n):
            cols = [0, 1, 2, 3]  # move flags
            cols += [col(f, j) for j in range(n, u) for f in seen_features[r.enemy_shield_bits]]
            cols += [col(f, j) for j in range(n) if j != i for f in seen_features[r.agent_shield_bits]]
            cols += [col(f, i) for f in [4] + [5] * r.agent_shield_bits + bits]  # own health, shield, type
            rows.append(cols)
        obs_columns = torch.tensor(rows, device=self.device)  # [N, O]
        assert obs_columns.shape[1] == self._env_info.obs_shape
        bits = [5 + i for i in range(k)]
        agent_features = [0, 1, 2, 3] + [4] * r.agent_shield_bits + bits
        enemy_features = [0, 2, 3] + [4] * r.enemy_shield_bits + bits
        cols = [f * u + j for j in range(u) for f in (agent_features if j < n else enemy_features)]
        state_columns = torch.tensor(cols, device=self.device)  # [S - N * A]
        assert len(cols) + n * self.n_actions == self._env_info.state_shape
        return obs_columns, state_columns

    # ------------------------------------------------------------------ episode control
    @_below_autograd
    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if seed is not None:
            self.generator.manual_seed(int(seed))
        b, u, dev, r = self.n_envs, self.n_units, self.device, self.roster
        jitter = (torch.rand(b, u, 2, generator=self.generator, device=dev) * 2 - 1) * self.spawn_jitter
        self._pos = self._spawn + jitter  # [B, U, 2]
        self._health = r.max_health.expand(b, u).clone()  # [B, U]
        self._shield = r.max_shield.expand(b, u).clone()
        self._energy = r.start_energy.expand(b, u).clone()
        self._cooldown = torch.zeros(b, u, device=dev)  # seconds until the weapon is ready
        self._since_damage = torch.full((b, u), 1e3, device=dev)  # seconds since last damaged
        self._target = torch.full((b, u), -1, dtype=torch.long, device=dev)  # enemy AI memory
        self._engaged_on = torch.full((b, u), -1, dtype=torch.long, device=dev)  # slot each unit is attacking
        self._arrived = torch.zeros(b, self.n_enemies, dtype=torch.bool, device=dev)  # at the attack point
        self._last_action = torch.zeros(b, self.n_agents, self.n_actions, device=dev)  # one-hot
        self._t = torch.zeros(b, dtype=torch.long, device=dev)
        self._terminated = torch.zeros(b, dtype=torch.bool, device=dev)
        self._truncated = torch.zeros(b, dtype=torch.bool, device=dev)
        self._won = torch.zeros(b, dtype=torch.bool, device=dev)
        self._observation = None
        self._dist_next = None  # distances step() computed for the next observation
        return self.get_obs(), self.get_state(), self.get_avail_actions()

    def place_units(
        self,
        positions: torch.Tensor | None = None,
        health: torch.Tensor | None = None,
        shield: torch.Tensor | None = None,
        energy: torch.Tensor | None = None,
        cooldown: torch.Tensor | None = None,
        since_damage: torch.Tensor | None = None,
    ) -> None:
        """Hand-place units in every battle (tests and scripted scenarios), after ``reset()``.

        Each argument broadcasts to [B, U] ([B, U, 2] for positions; slots are agents then
        enemies in map order); ``None`` keeps the current value. Health 0 removes a unit.
        ``cooldown`` is in seconds, ``since_damage`` the seconds since the unit was last damaged.
        """
        b, u = self.n_envs, self.n_units
        for name, value, shape in [
            ("_pos", positions, (b, u, 2)),
            ("_health", health, (b, u)),
            ("_shield", shield, (b, u)),
            ("_energy", energy, (b, u)),
            ("_cooldown", cooldown, (b, u)),
            ("_since_damage", since_damage, (b, u)),
        ]:
            if value is not None:
                value = torch.as_tensor(value, dtype=torch.float32, device=self.device)
                setattr(self, name, value.expand(shape).clone())
        self._target.fill_(-1)  # the enemy AI starts afresh
        self._engaged_on.fill_(-1)
        self._arrived.fill_(False)
        self._observation = None
        self._dist_next = None  # distances step() computed for the next observation

    # ------------------------------------------------------------------ dynamics
    @_below_autograd
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        b, n, u, r = self.n_envs, self.n_agents, self.n_units, self.roster
        if tuple(actions.shape) != (b, n):
            raise ValueError(f"actions must have shape [n_envs, n_agents] = [{b}, {n}], got {tuple(actions.shape)}")
        act = actions.to(self.device, torch.long)  # [B, N]
        avail = self.get_avail_actions()  # also computes self._dist for the current positions
        in_range = act.clamp(0, self.n_actions - 1)
        taken_ok = avail.gather(2, in_range.unsqueeze(-1)).squeeze(-1) & (act == in_range)  # [B, N]
        if self.strict_actions:
            bad = ~taken_ok
            if bool(bad.any()):
                env_i, agent_i = bad.nonzero()[0].tolist()
                raise ValueError(
                    f"action {int(act[env_i, agent_i])} of agent {agent_i} in env {env_i} is not available"
                )
        act = torch.where(taken_ok, act, avail[..., STOP].long())  # else stop (alive) / no-op (dead)
        dt = STEP_SECONDS
        dist = self._dist  # [B, U, U]
        pos, health, shield = self._pos, self._health, self._shield
        alive = self._alive  # [B, U]
        dead = ~alive
        damaged = health < r.max_health
        active = ~(self._terminated | self._truncated)  # [B]

        # --- orders: a target slot per unit (-1 none), or a move
        slot = act - N_NON_ATTACK_ACTIONS
        hold = act == STOP
        if r.agent_healers:  # a Medivac's order heals ally slot; a holding Medivac heals the nearest damaged ally
            ordered = torch.where(r.healer[:n], slot, slot + n)  # [B, N] attack enemy / heal ally slot
            hold_ok = torch.where(r.healer[:n, None], r.can_heal[:n] & damaged.unsqueeze(1), r.can_attack[:n])
            hold_not = ~hold_ok | dead.unsqueeze(1)
        else:
            ordered, hold_not = slot + n, r.cannot_attack[:n] | dead.unsqueeze(1)
        # [B, N, U] hold_not: not a candidate of a holding agent, which picks the nearest and acts once in reach
        agent_target = torch.where(slot >= 0, ordered, nearest(hold_not, dist[:, :n]).masked_fill_(~hold, -1))
        max_step = self._speed_dt * alive  # [B, U]
        # where the agents go this step (their orders do not depend on the enemies' choices): the
        # enemy AI judges ranges against these positions (see choose_enemy_targets)
        a_tgt = agent_target.clamp(min=0)
        a_chase = (agent_target >= 0) & ~hold
        free_agents = pos[:, :n] + self._action_offset[act]  # [B, N, 2] a move order's point
        a_goal = torch.where(a_chase.unsqueeze(-1), pos.gather(1, a_tgt.unsqueeze(-1).expand(b, n, 2)), free_agents)
        a_reach = r.reach[r.slot[:n], a_tgt]  # [B, N]
        agents_next = step_toward(pos[:, :n], a_goal, a_reach * a_chase, max_step[:, :n])  # [B, N, 2]
        enemy_dist = torch.cat(
            [torch.cdist(pos[:, n:], agents_next, compute_mode="donot_use_mm_for_euclid_dist"), dist[:, n:, n:]], -1
        )  # [B, E, U]
        enemy_target, enemy_memory = choose_enemy_targets(
            enemy_dist, alive, damaged, self._target[:, n:], self._engaged_on, agent_target, self._arrived, r,
            SIGHT_RANGE,
        )  # [B, E]
        target = torch.cat([agent_target, enemy_target], 1)  # [B, U]
        has_target = target >= 0
        tgt = target.clamp(min=0)
        tgt_xy = tgt.unsqueeze(-1).expand(b, u, 2)
        pair = r.pair_table[r.slot, tgt]  # [B, U, 7] stats of each unit against its chosen target
        reach = pair[..., 0]  # [B, U]

        # --- movement
        chase = torch.cat([a_chase, has_target[:, n:]], 1)  # [B, U] walk toward the target
        chase2 = chase.unsqueeze(-1)
        free_goal = torch.cat([free_agents, self._attack_point.expand(b, u - n, 2)], 1)  # [B, U, 2]
        stop_at = reach * chase
        # A chaser follows its target through the step (the game moves both every game loop): it
        # aims at where the target goes this step, so a same-speed runner keeps its lead.
        first = step_toward(pos, torch.where(chase2, pos.gather(1, tgt_xy), free_goal), stop_at, max_step)
        walked_to = step_toward(pos, torch.where(chase2, first.gather(1, tgt_xy), free_goal), stop_at, max_step)
        walk_time = (walked_to - pos).square().sum(-1).sqrt() / r.speed_or_tiny  # [B, U] seconds walking
        new_pos = separate(walked_to, r.contact, alive & r.ground, r.distinct)  # bodies collide
        new_pos = new_pos.clamp(min=self._origin, max=self._bounds)
        # finished battles stay frozen; their distances are the next observation's too
        pos_next = torch.where(active.view(b, 1, 1), new_pos, pos)  # [B, U, 2]
        dist_next = torch.cdist(pos_next, pos_next, compute_mode="donot_use_mm_for_euclid_dist")  # [B, U, U]

        # --- attacks and heals from the new positions. A unit that walked fires only after it
        # stopped and wound up its weapon (damage point); the hit lands when the later of that
        # moment and its cooldown's end falls within the step.
        to_target = dist_next.gather(2, tgt.unsqueeze(-1)).squeeze(-1)  # [B, U] (battles that go on)
        engaged = has_target & alive & alive.gather(1, tgt) & (to_target <= pair[..., 6])
        fire_time = torch.maximum(self._cooldown, (walk_time + DAMAGE_POINT).masked_fill_(walk_time <= 0, 0.0))
        armed_on = engaged & (pair[..., 4] > 0)
        fire = armed_on & (fire_time <= dt)

        # Rules a map cannot use are skipped (static per map, same results): a second hit phase
        # without Zealots, shields without Protoss, healing without Medivacs.
        tgt3 = tgt.unsqueeze(-1).expand(b, u, 3)
        took_damage = None
        for phase in range(1, r.max_hits + 1):  # the Zealot's second hit lands after everyone's first
            firing = fire & (r.hits >= phase) if phase > 1 else fire
            per_hit = pair[..., 1:4] * firing.unsqueeze(-1)  # [B, U, 3] raw damage, past armor, count
            pooled = torch.zeros(b, u, 3, device=self.device).scatter_add_(1, tgt3, per_hit)
            if r.has_shields:
                health, shield = apply_hits(health, shield, pooled[..., 0], pooled[..., 1], pooled[..., 2], r.armor)
            else:  # no shield to absorb: every hit loses its armor (exactly apply_hits with shield 0)
                health = health - pooled[..., 1]
            hit_now = pooled[..., 0] > 0
            took_damage = hit_now if took_damage is None else took_damage | hit_now
        survived = alive & (health > 0)
        health = health.clamp(min=0.0)

        energy = self._energy
        if r.has_healers:
            healing = engaged & (pair[..., 5] > 0)
            missing = (r.max_health - health).gather(1, tgt) * survived.gather(1, tgt)  # [B, U]
            healed, energy = heal(energy, missing, healing & survived, r.heal_per_second, r.heal_per_energy, dt)
            health = torch.minimum(health + torch.zeros_like(health).scatter_add_(1, tgt, healed), r.max_health)
            energy = torch.minimum(energy + r.energy_per_second * dt, r.max_energy)

        since_damage = (self._since_damage + dt).masked_fill_(took_damage, 0.0)
        if r.has_shields:
            shield = regenerate_shields(shield, r.max_shield, since_damage, dt) * survived
        cooldown = advance_cooldown(self._cooldown, fire, fire_time, r.cooldown, dt)
        engaged_on = torch.where(armed_on & survived & survived.gather(1, tgt), tgt, -1)  # [B, U]

        # --- reward (SMAC: only positive, from enemy losses) and the end of the battle
        if r.has_shields:
            enemy_lost = ((self._health + self._shield)[:, n:] - (health + shield)[:, n:]).sum(1)  # [B]
        else:  # shields are 0 (adding them changes at most the sign of a zero, which abs() drops)
            enemy_lost = (self._health[:, n:] - health[:, n:]).sum(1)
        new_health = torch.where(active.unsqueeze(1), health, self._health)  # [B, U] finished battles stay frozen
        # per side (agents, enemies) in one product: fighters left, units killed this step, units alive
        counts = (
            torch.stack([survived & r.fighter, alive & ~survived, new_health > 0], 1).float() @ r.side
        ).long()  # [B, 3, 2] (exact: small integers)
        kills = counts[:, 1, 1]
        no_agents, no_enemies = (counts[:, 0] == 0).unbind(1)
        won = no_enemies & ~no_agents  # a side with only Medivacs has lost (MMM)
        ended = no_agents | no_enemies
        t = self._t + active
        timeout = ~ended & (t >= self.spec.episode_limit)
        reward = ((enemy_lost + REWARD_PER_KILL * kills).abs() + REWARD_WIN * won) * self.reward_scale * active

        # --- commit; finished battles stay frozen
        a1 = active.unsqueeze(1)
        self._pos = pos_next
        self._health = new_health
        if r.has_shields:
            self._shield = torch.where(a1, shield, self._shield)
        if r.has_healers:
            self._energy = torch.where(a1, energy, self._energy)
        self._cooldown = torch.where(a1, cooldown, self._cooldown)
        self._since_damage = torch.where(a1, since_damage, self._since_damage)
        self._target[:, n:] = torch.where(a1, enemy_memory, self._target[:, n:])
        self._engaged_on = torch.where(a1, engaged_on, self._engaged_on)
        at_point = (new_pos[:, n:] - self._attack_point).square().sum(-1) < ARRIVAL_RADIUS**2  # [B, E]
        self._arrived = self._arrived | (at_point & a1)
        one_hot = (act.unsqueeze(-1) == self._action_ids).float()  # [B, N, A]
        self._last_action = torch.where(active.view(b, 1, 1), one_hot, self._last_action)
        self._t = t
        self._terminated = self._terminated | (active & ended)
        self._truncated = self._truncated | (active & timeout)
        self._won = self._won | (active & won)
        self._observation = None
        self._dist_next = dist_next
        info = {
            "battle_won": self._won,  # every step builds new flag tensors: callers may keep these
            "dead_allies": n - counts[:, 2, 0],
            "dead_enemies": self.n_enemies - counts[:, 2, 1],
        }
        return reward, self._terminated, self._truncated, info

    # ------------------------------------------------------------------ observation
    def get_obs(self) -> torch.Tensor:
        return self._observe()[0]  # [B, N, O]

    def get_state(self) -> torch.Tensor:
        return self._observe()[1]  # [B, S]

    def get_avail_actions(self) -> torch.Tensor:
        return self._observe()[2]  # [B, N, A] bool

    @_below_autograd
    def _observe(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Built feature-major ([..., feature, unit]): concatenating and masking whole rows of U
        # values is a few large memory ops, where feature-last would copy a few floats per unit.
        if self._observation is not None:
            return self._observation
        b, n, r = self.n_envs, self.n_agents, self.roster
        pos = self._pos
        pos_t = pos.transpose(1, 2)  # [B, 2, U]
        alive = self._health > 0  # [B, U]
        self._alive = alive
        dist = self._dist_next  # [B, U, U] from step(), or else:
        if dist is None:
            dist = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")  # exact, no matmul
        self._dist, self._dist_next = dist, None

        health = self._health * r.inv_max_health  # [B, U] fractions
        shield = self._shield * r.inv_max_shield
        descr = torch.cat(
            [health.unsqueeze(1), shield.unsqueeze(1), r.type_onehot_t.expand(b, -1, -1)], 1
        )  # [B, 2 + k, U] health, shield, type
        alive_a = alive[:, :n]

        d = dist[:, :n]  # [B, N, U]
        both = alive_a.unsqueeze(2) & alive.unsqueeze(1)
        seen = both & (d < SIGHT_RANGE)
        shootable = both & (d <= SHOOT_RANGE)
        flag = torch.where(self._is_enemy, shootable, seen)  # attackable for an enemy, visible for an ally
        delta = (pos_t.unsqueeze(1) - pos[:, :n].unsqueeze(3)) / SIGHT_RANGE  # [B, N (from), 2, U (to)]
        feats = torch.cat(
            [flag.unsqueeze(2).float(), d.unsqueeze(2) / SIGHT_RANGE, delta, descr.unsqueeze(1).expand(b, n, -1, -1)],
            2,
        ) * seen.unsqueeze(2).float()  # [B, N, 6 + k, U]

        dest = pos[:, :n].unsqueeze(2) + self._move_offsets  # [B, N, 4, 2]
        can_move = ((dest >= 0) & (dest <= self._bounds)).all(-1) & alive_a.unsqueeze(-1)  # [B, N, 4]
        # [B, N, W]; a dead agent's row is already 0 (SMAC: dead agents observe zeros)
        wide = torch.cat([can_move.float(), feats.flatten(2)], -1)
        obs = wide.gather(2, self._obs_columns.expand(b, -1, -1))  # [B, N, O]

        target_ok = shootable[:, :, n:]  # [B, N, E]
        if r.agent_healers:
            heal_ok = shootable[:, :, :n] & r.can_heal[:n, :n]  # [B, N, N]
            heal_ok = heal_ok[..., : self.n_enemies] if n >= self.n_enemies else F.pad(heal_ok, (0, self.n_enemies - n))
            target_ok = torch.where(r.healer[:n, None], heal_ok, target_ok)
        alive_a3 = alive_a.unsqueeze(-1)
        avail = torch.cat([~alive_a3, alive_a3, can_move, target_ok], -1)  # [B, N, A]

        xy = (pos_t - self._half_bounds_t) / self._bounds_t  # [B, 2, U] relative to the centre
        cooldown = torch.where(  # [B, U] weapon cooldown / SMAC's max; Medivac: energy / 200
            r.healer, self._energy * r.inv_max_energy, self._cooldown * self._cooldown_feature_scale
        )
        units = torch.cat(
            [health.unsqueeze(1), cooldown.unsqueeze(1), xy, descr[:, 1:]], 1
        ) * alive.unsqueeze(1).float()  # [B, 5 + k, U] health, cooldown, x, y, shield, type
        state = torch.cat([units.flatten(1).index_select(1, self._state_columns), self._last_action.flatten(1)], -1)

        self._observation = (obs, state, avail)
        return self._observation

    # ---------------------------------------------------- read-only views (scripted policies, tests)
    @property
    def unit_positions(self) -> torch.Tensor:
        return self._pos  # [B, U, 2]

    @property
    def unit_health(self) -> torch.Tensor:
        return self._health  # [B, U]

    @property
    def unit_shield(self) -> torch.Tensor:
        return self._shield  # [B, U]

    @property
    def unit_energy(self) -> torch.Tensor:
        return self._energy  # [B, U]

    @property
    def weapon_cooldown(self) -> torch.Tensor:
        return self._cooldown  # [B, U] seconds until the next attack
