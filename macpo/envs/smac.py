"""SMAC scenarios from config: ``env.backend`` picks our simulator or the real game.

``conf/env/<map>.yaml`` entries name ``make_smac_env`` as their ``_target_``:

- ``backend: lite`` (default): ``SmacLiteEnv``, a batched torch battle with SMAC's interfaces;
  needs nothing beyond this package.
- ``backend: sc2``: ``Sc2SmacEnv``, the StarCraft Multi-Agent Challenge's ``StarCraft2Env``
  (oxwhirl/smac + StarCraft II), checked and explained at construction when missing.
"""

from __future__ import annotations

import torch

from macpo.envs.base import BatchedEnv
from macpo.envs.smac_lite import MAPS, SmacLiteEnv

BACKENDS = ("lite", "sc2")


def make_smac_env(
    map_name: str,
    backend: str = "lite",
    n_envs: int = 1,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    **kwargs,
) -> BatchedEnv:
    """B parallel episodes of the SMAC map ``map_name`` on ``backend``; ``kwargs`` go to the backend."""
    if backend == "lite":
        return SmacLiteEnv(map_name, n_envs=n_envs, device=device, seed=seed, **kwargs)
    if backend == "sc2":
        from macpo.envs.sc2_adapter import Sc2SmacEnv  # imports nothing from smac until checked

        return Sc2SmacEnv(map_name, n_envs=n_envs, device=device, seed=seed, **kwargs)
    raise ValueError(
        f"env.backend must be one of {BACKENDS}, got {backend!r} "
        f"(lite simulates {', '.join(MAPS)} without StarCraft II)"
    )
