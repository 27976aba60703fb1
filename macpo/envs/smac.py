"""SMAC scenarios from config: ``env.backend`` picks our simulator, JaxMARL's SMAX or the real game.

``conf/env/<map>.yaml`` entries name ``make_smac_env`` as their ``_target_``:

- ``backend: lite`` (default): ``SmacLiteEnv``, a batched torch battle with SMAC's interfaces;
  needs nothing beyond this package. ``sim_version`` must name the rules this code simulates.
- ``backend: smax``: ``SmaxEnv``, JaxMARL's SMAX with its heuristic enemies (optional extra
  ``pip install -e ".[smax]"``); SMAX's own obs/state/action sizes, and only the maps it has.
- ``backend: sc2``: ``Sc2SmacEnv``, the StarCraft Multi-Agent Challenge's ``StarCraft2Env``
  (oxwhirl/smac + StarCraft II), checked and explained at construction when missing.
"""

from __future__ import annotations

import torch

from macpo.envs.base import BatchedEnv
from macpo.envs.smac_lite import MAPS, SIM_VERSION, SmacLiteEnv

BACKENDS = ("lite", "smax", "sc2")


def check_smac_config(map_name: str, backend: str = "lite", sim_version: int | None = None) -> None:
    """Refuse, before any compute, a SMAC entry that cannot run here (ValueError saying why)."""
    if backend not in BACKENDS:
        raise ValueError(
            f"env.backend must be one of {BACKENDS}, got {backend!r} "
            f"(lite simulates {', '.join(MAPS)} without StarCraft II)"
        )
    if backend == "lite" and sim_version is not None and int(sim_version) != SIM_VERSION:
        raise ValueError(
            f"env.sim_version={sim_version}, but this code simulates SMAC-lite version {SIM_VERSION}; runs of "
            f"another version are not comparable: set env.sim_version={SIM_VERSION} (or check out that version)"
        )
    if backend == "smax":
        from macpo.envs.smax import check_smax

        check_smax(map_name)


def make_smac_env(
    map_name: str,
    backend: str = "lite",
    n_envs: int = 1,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    sim_version: int | None = None,
    **kwargs,
) -> BatchedEnv:
    """B parallel episodes of the SMAC map ``map_name`` on ``backend``; ``kwargs`` go to the backend."""
    check_smac_config(map_name, backend, sim_version)
    if backend == "lite":
        return SmacLiteEnv(map_name, n_envs=n_envs, device=device, seed=seed, **kwargs)
    if backend == "smax":
        from macpo.envs.smax import SmaxEnv

        return SmaxEnv(map_name, n_envs=n_envs, device=device, seed=seed, **kwargs)
    from macpo.envs.sc2_adapter import Sc2SmacEnv  # imports nothing from smac until checked

    return Sc2SmacEnv(map_name, n_envs=n_envs, device=device, seed=seed, **kwargs)
