"""Build an env from its config group entry (``conf/env/*.yaml``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from macpo.envs.base import BatchedEnv

#: config keys that describe the entry rather than configure the env (``defaults``: its schema,
#: present when a yaml file is loaded as it is rather than composed by Hydra)
DESCRIPTIVE_KEYS = ("name", "defaults")
SMAC_TARGET = "macpo.envs.smac.make_smac_env"


def make_env(env_cfg: DictConfig, n_envs: int, device, seed: int | None = None) -> BatchedEnv:
    kwargs = OmegaConf.to_container(env_cfg, resolve=True)
    for k in DESCRIPTIVE_KEYS:
        kwargs.pop(k, None)
    return hydra.utils.instantiate(kwargs, n_envs=n_envs, device=device, seed=seed, _convert_="all")


def check_env_config(env_cfg: DictConfig) -> None:
    """Cheap checks of an env entry before any compute (ValueError): the SMAC backend is known and
    installed, the map exists there, and the simulator version matches this code."""
    if env_cfg.get("_target_") == SMAC_TARGET:
        from macpo.envs.smac import check_smac_config

        check_smac_config(str(env_cfg.map_name), str(env_cfg.get("backend", "lite")), env_cfg.get("sim_version"))
