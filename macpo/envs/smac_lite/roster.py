"""Per-slot unit stats of one map as tensors, and the static tables between pairs of slots.

Slots are agents first (0..N-1), then enemies (N..U-1). Pair tables are indexed
``[source, target]`` so that a batch of chosen targets ``tgt [B, U]`` reads its row with
``table[slot_index, tgt]``.
"""

from __future__ import annotations

import torch

from macpo.envs.smac_lite.maps import MapSpec
from macpo.envs.smac_lite.units import MIN_HIT_DAMAGE, MIN_SCAN_RANGE, SCAN_RANGE_MARGIN, UNIT_TYPES

#: reach slack for float round-off after walking exactly into range
RANGE_TOLERANCE = 1e-4


class Roster:
    """The units of a map: stats [U], side masks [U], unit-type one-hots [U, bits], pair tables [U, U]."""

    def __init__(self, spec: MapSpec, device: torch.device):
        self.spec = spec
        self.n_agents = spec.n_agents
        self.n_enemies = spec.n_enemies
        self.types = [UNIT_TYPES[u] for u in spec.agent_units + spec.enemy_units]
        self.n_units = len(self.types)

        def stat(attr: str, dtype=torch.float32) -> torch.Tensor:
            return torch.tensor([getattr(u, attr) for u in self.types], dtype=dtype, device=device)  # [U]

        self.max_health = stat("max_health")
        self.max_shield = stat("max_shield")
        self.armor = stat("armor")
        self.cooldown = stat("cooldown")
        self.speed = stat("speed")
        self.radius = stat("radius")
        self.hits = stat("hits", torch.long)
        self.heal_per_second = stat("heal_per_second")
        self.heal_per_energy = stat("heal_per_energy")
        self.max_energy = stat("max_energy")
        self.start_energy = stat("start_energy")
        self.energy_per_second = stat("energy_per_second")
        self.max_cooldown_loops = stat("max_cooldown_loops")
        self.healer = torch.tensor([u.is_healer for u in self.types], device=device)  # [U] bool
        self.is_agent = torch.arange(self.n_units, device=device) < self.n_agents  # [U] bool
        self.slot = torch.arange(self.n_units, device=device)  # [U]
        self.has_healers = bool(any(u.is_healer for u in self.types))
        # static facts of the map that let step() skip whole rules (same results, fewer tensor ops)
        self.agent_healers = bool(any(u.is_healer for u in self.types[: self.n_agents]))
        self.enemy_healers = bool(any(u.is_healer for u in self.types[self.n_agents :]))
        self.has_shields = bool(any(u.max_shield > 0 for u in self.types))
        self.max_hits = max(u.hits for u in self.types)

        # 1 / max for fractions; 0 where the max is 0 (no shield, no energy)
        self.inv_max_health = 1.0 / self.max_health
        self.inv_max_shield = torch.where(self.max_shield > 0, 1.0 / self.max_shield.clamp(min=1e-9), 0.0)
        self.inv_max_energy = torch.where(self.max_energy > 0, 1.0 / self.max_energy.clamp(min=1e-9), 0.0)

        # unit-type one-hot per slot, [U, bits]
        bits = spec.type_bits
        onehot = torch.zeros(self.n_units, len(bits), device=device)
        for i, u in enumerate(spec.agent_units + spec.enemy_units):
            if bits:
                onehot[i, bits.index(u)] = 1.0
        self.type_onehot = onehot
        self.type_onehot_t = onehot.t().contiguous()  # [bits, U]
        self.agent_shield_bits = int(any(u.max_shield > 0 for u in self.types[: self.n_agents]))
        self.enemy_shield_bits = int(any(u.max_shield > 0 for u in self.types[self.n_agents :]))

        # pair tables [U (source), U (target)]
        weapon_range = stat("weapon_range")
        armored = stat("armored")
        air = torch.tensor([u.air for u in self.types], device=device)
        hits_air = torch.tensor([u.hits_air for u in self.types], device=device)
        hits_ground = torch.tensor([u.hits_ground for u in self.types], device=device)
        same_side = self.is_agent[:, None] == self.is_agent[None, :]
        can_hit = torch.where(air[None, :], hits_air[:, None], hits_ground[:, None])
        edges = self.radius[:, None] + self.radius[None, :]  # [U, U] weapon ranges run edge to edge
        self.reach = weapon_range[:, None] + edges  # centre distance
        scan = torch.clamp(weapon_range + SCAN_RANGE_MARGIN, min=MIN_SCAN_RANGE)  # [U]
        self.scan = scan[:, None] + edges  # centre distance at which automatic targeting acquires a target
        self.ground = ~air  # [U] ground bodies collide (air units fly over them)
        self.can_attack = ~same_side & can_hit & ~self.healer[:, None]
        self.can_heal = same_side & self.healer[:, None] & ~self.healer[None, :]
        self.armed = self.can_attack.any(1)  # [U] has a weapon that can fire back: a "threat"
        hit = stat("damage")[:, None] + stat("bonus_vs_armored")[:, None] * armored[None, :]
        self.hit = hit * self.can_attack  # raw damage of one hit (what shields absorb)
        self.hit_health = (hit - self.armor[None, :]).clamp(min=MIN_HIT_DAMAGE) * self.can_attack  # past armor
        # the pair tables step() reads for each unit's chosen target, in one [U, U, 7] table (one
        # lookup): reach, [hit, hit_health, 1] (a firing unit's contribution to the pooled hits is
        # this slice times 1/0), can_attack, can_heal, reach + the round-off slack
        self.pair_table = torch.stack(
            [
                self.reach,
                self.hit,
                self.hit_health,
                torch.ones_like(self.reach),
                self.can_attack.float(),
                self.can_heal.float(),
                self.reach + RANGE_TOLERANCE,
            ],
            -1,
        )

        # constants step() would otherwise rebuild every step (same values, computed once)
        self.contact = self.radius[:, None] + self.radius[None, :]  # [U, U] centre distance of touching bodies
        self.distinct = ~torch.eye(self.n_units, dtype=torch.bool, device=device)  # [U, U] pairs of two units
        self.speed_or_tiny = self.speed.clamp(min=1e-9)  # [U] divisor of walk times
        self.armed_float = self.armed.float()  # [U]
        self.fighter = ~self.healer  # [U]
        self.side = torch.stack([self.is_agent, ~self.is_agent], 1).float()  # [U, 2] one-hot of agent / enemy
        self.cannot_attack = ~self.can_attack  # [U, U]
        self.enemy_cannot_attack = self.cannot_attack[self.n_agents :]  # [E, U]
        self.enemy_reach_tol = self.reach[self.n_agents :] + RANGE_TOLERANCE  # [E, U]
        self.enemy_scan = self.scan[self.n_agents :]  # [E, U]
        self.enemy_slots = torch.arange(self.n_agents, self.n_units, device=device).view(1, -1, 1)  # [1, E, 1]
