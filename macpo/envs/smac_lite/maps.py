"""The SMAC scenarios as data: one ``MapSpec`` entry per map (adding a map adds no code).

Compositions, episode limits and unit-type bits are SMAC's (``docs/smac.md``).
Layout (as in the StarCraft-free reimplementations): an open 32 x 32 arena, the agents'
group centred at (9, 16) and the enemies' at (23, 16); the enemies attack-move to the
agents' spawn point. Units of a group stand in a square grid, first slots in front.
Slot order is SMAC's: agents sorted by unit type (Marauders, Marines, Medivac; Stalkers,
Zealots), enemies in the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from macpo.envs.smac_lite.units import UNIT_TYPES

#: centre distance between neighbours of a spawn formation
FORMATION_SPACING = 1.4


@dataclass(frozen=True)
class MapSpec:
    """One scenario: who fights whom, where they start, and for how long."""

    name: str
    agents: tuple[tuple[str, int], ...]  # (unit type, count) in slot order
    enemies: tuple[tuple[str, int], ...]
    episode_limit: int
    type_bits: tuple[str, ...] = ()  # unit types of the one-hot, in bit order; () = no bits
    width: float = 32.0
    height: float = 32.0
    agent_spawn: tuple[float, float] = (9.0, 16.0)
    enemy_spawn: tuple[float, float] = (23.0, 16.0)

    def __post_init__(self):
        names = {u for u, _ in self.agents + self.enemies}
        unknown = names - set(UNIT_TYPES)
        if unknown:
            raise ValueError(f"map {self.name}: unknown unit types {sorted(unknown)}; known: {sorted(UNIT_TYPES)}")
        if self.type_bits and not names <= set(self.type_bits):
            raise ValueError(f"map {self.name}: type_bits {self.type_bits} must list every unit type {sorted(names)}")

    @property
    def agent_units(self) -> list[str]:
        return [u for u, n in self.agents for _ in range(n)]

    @property
    def enemy_units(self) -> list[str]:
        return [u for u, n in self.enemies for _ in range(n)]

    @property
    def n_agents(self) -> int:
        return len(self.agent_units)

    @property
    def n_enemies(self) -> int:
        return len(self.enemy_units)

    @property
    def attack_point(self) -> tuple[float, float]:
        """Where the enemies' built-in AI attack-moves to: the agents' start."""
        return self.agent_spawn

    def spawn_positions(self) -> list[tuple[float, float]]:
        """Start positions of all units, agents then enemies, before the reset's jitter."""
        return formation(self.agent_spawn, self.n_agents, facing=1.0) + formation(
            self.enemy_spawn, self.n_enemies, facing=-1.0
        )


def formation(center: tuple[float, float], count: int, facing: float) -> list[tuple[float, float]]:
    """``count`` positions in a square grid around ``center``; column 0 is nearest the enemy
    (``facing`` +1: the enemy is towards +x)."""
    rows = math.ceil(math.sqrt(count))
    cols = math.ceil(count / rows)
    out = []
    for i in range(count):
        col, row = divmod(i, rows)
        x = center[0] + facing * ((cols - 1) / 2 - col) * FORMATION_SPACING
        y = center[1] + (row - (rows - 1) / 2) * FORMATION_SPACING
        out.append((x, y))
    return out


_MMM = (("marauder", 2), ("marine", 7), ("medivac", 1))
_MMM_BITS = ("marauder", "marine", "medivac")
_SZ_BITS = ("stalker", "zealot")

MAPS: dict[str, MapSpec] = {
    m.name: m
    for m in (
        MapSpec("3m", (("marine", 3),), (("marine", 3),), episode_limit=60),
        MapSpec("8m", (("marine", 8),), (("marine", 8),), episode_limit=120),
        MapSpec("2s3z", (("stalker", 2), ("zealot", 3)), (("stalker", 2), ("zealot", 3)), 120, _SZ_BITS),
        MapSpec("3s5z", (("stalker", 3), ("zealot", 5)), (("stalker", 3), ("zealot", 5)), 150, _SZ_BITS),
        MapSpec("MMM", _MMM, _MMM, episode_limit=150, type_bits=_MMM_BITS),
        MapSpec("MMM2", _MMM, (("marauder", 3), ("marine", 8), ("medivac", 1)), 180, _MMM_BITS),
        MapSpec("5m_vs_6m", (("marine", 5),), (("marine", 6),), episode_limit=70),
        MapSpec("3s_vs_5z", (("stalker", 3),), (("zealot", 5),), episode_limit=250),
        MapSpec("27m_vs_30m", (("marine", 27),), (("marine", 30),), episode_limit=180),
    )
}


def get_map(name: str | MapSpec) -> MapSpec:
    """The map called ``name`` (SMAC's spelling; case-insensitive), or a ValueError listing the maps.
    A ``MapSpec`` is returned as is."""
    if isinstance(name, MapSpec):
        return name
    if name in MAPS:
        return MAPS[name]
    by_lower = {k.lower(): v for k, v in MAPS.items()}
    if isinstance(name, str) and name.lower() in by_lower:
        return by_lower[name.lower()]
    raise ValueError(f"env.map_name={name!r} is not a known SMAC map; known maps: {', '.join(MAPS)}")
