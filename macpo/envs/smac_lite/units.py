"""StarCraft II unit types used by the SMAC maps (Legacy of the Void stats).

Values are the public game data listed in ``docs/smac.md``; times and speeds are
"faster" game speed values (22.4 game loops per second). Radii are the game's unit footprint
radii: weapon ranges in StarCraft II are measured between unit edges, so a weapon reaches a
target whose centre is within ``weapon_range + radius(attacker) + radius(target)``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Protoss shields regenerate this many points per second ...
SHIELD_REGEN_PER_SECOND = 2.0
#: ... once this many seconds have passed without taking damage.
SHIELD_REGEN_DELAY = 10.0
#: a hit that reaches health deals at least this much, whatever the armor.
MIN_HIT_DAMAGE = 0.5
#: Legacy of the Void: a weapon scans for targets out to max(5, weapon range + 0.5) (edge to edge;
#: Liquipedia, "Automatic Targeting").
MIN_SCAN_RANGE = 5.0
SCAN_RANGE_MARGIN = 0.5
#: seconds between the end of a unit's walk and its hit landing (the weapon's damage point). The
#: game data's per-weapon values are not in our sources; SC2's are a few game loops for these
#: units, so one value of 2 loops (0.09 s) stands in for all of them.
DAMAGE_POINT = 2 / 22.4


@dataclass(frozen=True)
class UnitType:
    """One unit type's combat stats; a healer (Medivac) has ``heal_per_second > 0`` and no weapon."""

    name: str
    max_health: float
    max_shield: float
    armor: float
    damage: float  # per hit
    hits: int  # hits per attack (the Zealot strikes twice)
    bonus_vs_armored: float
    cooldown: float  # seconds between attacks
    weapon_range: float  # heal range for a healer
    speed: float  # distance per second
    radius: float
    armored: bool
    air: bool
    hits_ground: bool
    hits_air: bool
    max_cooldown_loops: float = 0.0  # SMAC's normaliser of the weapon cooldown in the state
    heal_per_second: float = 0.0
    heal_per_energy: float = 0.0
    max_energy: float = 0.0
    start_energy: float = 0.0
    energy_per_second: float = 0.0

    @property
    def is_healer(self) -> bool:
        return self.heal_per_second > 0


MARINE = UnitType(
    name="marine",
    max_health=45,
    max_shield=0,
    armor=0,
    damage=6,
    hits=1,
    bonus_vs_armored=0,
    cooldown=0.61,
    weapon_range=5,
    speed=3.15,
    radius=0.375,
    armored=False,
    air=False,
    hits_ground=True,
    hits_air=True,
    max_cooldown_loops=15,
)
MARAUDER = UnitType(
    name="marauder",
    max_health=125,
    max_shield=0,
    armor=1,
    damage=10,
    hits=1,
    bonus_vs_armored=10,
    cooldown=1.07,
    weapon_range=6,
    speed=3.15,
    radius=0.5625,
    armored=True,
    air=False,
    hits_ground=True,
    hits_air=False,
    max_cooldown_loops=25,
)
MEDIVAC = UnitType(
    name="medivac",
    max_health=150,
    max_shield=0,
    armor=1,
    damage=0,
    hits=0,
    bonus_vs_armored=0,
    cooldown=0.0,
    weapon_range=4,
    speed=3.5,
    radius=0.75,
    armored=True,
    air=True,
    hits_ground=False,
    hits_air=False,
    heal_per_second=12.6,  # 9 HP per 3 energy per "normal" second = 12.6 HP/s at "faster" (Liquipedia, Heal)
    heal_per_energy=3.0,
    max_energy=200,
    start_energy=50,
    energy_per_second=0.7875,  # 0.5625 per "normal" second, x1.4 at "faster"
)
STALKER = UnitType(
    name="stalker",
    max_health=80,
    max_shield=80,
    armor=1,
    damage=13,
    hits=1,
    bonus_vs_armored=5,
    cooldown=1.34,
    weapon_range=6,
    speed=4.13,
    radius=0.625,
    armored=True,
    air=False,
    hits_ground=True,
    hits_air=True,
    max_cooldown_loops=35,
)
ZEALOT = UnitType(
    name="zealot",
    max_health=100,
    max_shield=50,
    armor=1,
    damage=8,
    hits=2,
    bonus_vs_armored=0,
    cooldown=0.86,
    weapon_range=0.1,
    speed=3.15,
    radius=0.5,
    armored=False,
    air=False,
    hits_ground=True,
    hits_air=False,
    max_cooldown_loops=22,
)

UNIT_TYPES: dict[str, UnitType] = {u.name: u for u in (MARINE, MARAUDER, MEDIVAC, STALKER, ZEALOT)}
