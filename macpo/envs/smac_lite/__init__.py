"""SMAC without StarCraft II: a batched torch simulator of the SMAC battles (``env.backend: lite``)."""

from macpo.envs.smac_lite.env import SIM_VERSION, SmacLiteEnv
from macpo.envs.smac_lite.maps import MAPS, MapSpec, get_map
from macpo.envs.smac_lite.units import UNIT_TYPES, UnitType

__all__ = ["MAPS", "SIM_VERSION", "UNIT_TYPES", "MapSpec", "SmacLiteEnv", "UnitType", "get_map"]
