"""The real SMAC (``smac.env.StarCraft2Env`` driving StarCraft II) as a ``BatchedEnv``.

``env.backend: sc2`` runs B independent game instances, one Python object each, and
translates their per-episode API to the batched protocol:
- obs [B, N, O], state [B, S], avail [B, N, A] (bool) from ``get_obs/get_state/get_avail_actions``;
- ``step`` -> reward [B], terminated [B], truncated [B], ``info["battle_won"]`` [B];
  hitting the episode limit is a truncation (a draw), not a termination;
- a finished instance is not stepped again until ``reset()``: it returns reward 0 and keeps
  its flags and last observation, as the protocol asks.

Nothing here imports ``smac`` until ``check_sc2_install`` has confirmed that the right
package and the game are present; otherwise construction fails with instructions.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from macpo.envs.base import BatchedEnv, EnvInfo

INSTALL_HELP = (
    "To use env.backend=sc2 install (1) the StarCraft Multi-Agent Challenge: "
    "`pip install git+https://github.com/oxwhirl/smac.git` (not `pip install smac`: that PyPI "
    "package is SMAC3, a hyperparameter optimiser); (2) StarCraft II (Linux: the Blizzard headless "
    "build, unzipped to ~/StarCraftII); (3) the SMAC maps (SMAC_Maps.zip from the smac repository, "
    "unzipped into $SC2PATH/Maps/); and set SC2PATH to the StarCraft II folder. "
    "env.backend=lite needs none of this: it simulates the SMAC maps in torch."
)


class Sc2BackendUnavailable(RuntimeError):
    """The real-SMAC backend cannot run here; the message says what to install."""


def default_sc2_path() -> Path:
    """Where SMAC (through pysc2) looks for StarCraft II when SC2PATH is unset."""
    if sys.platform == "darwin":
        return Path("/Applications/StarCraft II")
    if sys.platform.startswith("win"):
        return Path("C:/Program Files (x86)/StarCraft II")
    return Path.home() / "StarCraftII"


def check_sc2_install(
    find_spec: Callable = importlib.util.find_spec,
    environ: Mapping[str, str] = os.environ,
) -> Path:
    """Return the StarCraft II folder, or raise ``Sc2BackendUnavailable`` naming what is missing."""

    def spec_of(name: str):
        try:
            return find_spec(name)
        except Exception:  # a broken or foreign package can fail while importing its parent
            return None

    if spec_of("smac") is None:
        raise Sc2BackendUnavailable(f"Python package `smac` is not installed. {INSTALL_HELP}")
    if spec_of("smac.env") is None:
        raise Sc2BackendUnavailable(
            "the installed `smac` has no `smac.env`: it is SMAC3 (hyperparameter optimisation), not the "
            f"StarCraft Multi-Agent Challenge; `pip uninstall smac` first. {INSTALL_HELP}"
        )
    sc2_path = Path(environ["SC2PATH"]) if environ.get("SC2PATH") else default_sc2_path()
    if not (sc2_path / "Versions").is_dir():
        where = "SC2PATH" if environ.get("SC2PATH") else "the default location (SC2PATH is unset)"
        raise Sc2BackendUnavailable(f"StarCraft II not found at {sc2_path}, {where}. {INSTALL_HELP}")
    if not (sc2_path / "Maps" / "SMAC_Maps").is_dir():
        raise Sc2BackendUnavailable(f"SMAC maps not found in {sc2_path / 'Maps' / 'SMAC_Maps'}. {INSTALL_HELP}")
    return sc2_path


class Sc2SmacEnv(BatchedEnv):
    """B instances of ``StarCraft2Env`` stepped in turn and returned as batched tensors.

    Args:
        map_name: a SMAC map name (SMAC validates it).
        n_envs: number of game instances B.
        device: torch device of the returned tensors.
        seed: instance i gets ``seed + i``; StarCraft II seeds only at construction.
        env_factory: builds one instance from keyword arguments; default ``StarCraft2Env``
            after ``check_sc2_install``. Tests pass a stand-in with the same methods.
        **smac_kwargs: passed on to every instance (e.g. ``difficulty``, ``reward_sparse``).
    """

    def __init__(
        self,
        map_name: str,
        n_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        env_factory: Callable | None = None,
        **smac_kwargs,
    ):
        if not isinstance(n_envs, int) or isinstance(n_envs, bool) or n_envs <= 0:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
        if env_factory is None:
            check_sc2_install()
            from smac.env import StarCraft2Env

            env_factory = StarCraft2Env
        self.n_envs = n_envs
        self.device = torch.device(device)
        self._envs = [
            env_factory(map_name=map_name, seed=None if seed is None else seed + i, **smac_kwargs)
            for i in range(n_envs)
        ]
        info = self._envs[0].get_env_info()
        self._env_info = EnvInfo(
            n_agents=int(info["n_agents"]),
            n_actions=int(info["n_actions"]),
            obs_shape=int(info["obs_shape"]),
            state_shape=int(info["state_shape"]),
            episode_limit=int(info["episode_limit"]),
            obs_dtype=torch.float16,
        )
        self._warned_seed = False
        self._reset_flags()

    @property
    def env_info(self) -> EnvInfo:
        return self._env_info

    def _reset_flags(self) -> None:
        b = self.n_envs
        self._steps = [0] * b
        self._terminated = torch.zeros(b, dtype=torch.bool)
        self._truncated = torch.zeros(b, dtype=torch.bool)
        self._won = torch.zeros(b, dtype=torch.bool)
        self._obs: list[np.ndarray] = [None] * b
        self._state: list[np.ndarray] = [None] * b
        self._avail: list[np.ndarray] = [None] * b

    def _read(self, i: int) -> None:
        env = self._envs[i]
        self._obs[i] = np.asarray(env.get_obs(), dtype=np.float32)  # [N, O]
        self._state[i] = np.asarray(env.get_state(), dtype=np.float32)  # [S]
        self._avail[i] = np.asarray(env.get_avail_actions()) != 0  # [N, A]

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if seed is not None and not self._warned_seed:
            warnings.warn(
                "env.backend=sc2 seeds StarCraft II only at construction; reset(seed) ignores it", stacklevel=2
            )
            self._warned_seed = True
        self._reset_flags()
        for i, env in enumerate(self._envs):
            env.reset()
            self._read(i)
        return self.get_obs(), self.get_state(), self.get_avail_actions()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        b, n = self.n_envs, self._env_info.n_agents
        if tuple(actions.shape) != (b, n):
            raise ValueError(f"actions must have shape [n_envs, n_agents] = [{b}, {n}], got {tuple(actions.shape)}")
        acts = actions.detach().to("cpu", torch.long).tolist()
        reward = torch.zeros(b)
        limit = self._env_info.episode_limit
        for i, env in enumerate(self._envs):
            if self._terminated[i] or self._truncated[i]:
                continue  # frozen until reset
            timeouts_before = getattr(env, "timeouts", None)
            r, terminated, info = env.step(acts[i])
            self._steps[i] += 1
            reward[i] = float(r)
            won = bool(info.get("battle_won", False))
            if "episode_limit" in info:  # SMAC sets it when continuing_episode is on
                timeout = bool(info["episode_limit"])
            elif timeouts_before is not None:  # otherwise its timeout counter tells
                timeout = getattr(env, "timeouts", timeouts_before) > timeouts_before
            else:
                timeout = bool(terminated) and not won and self._steps[i] >= limit
            self._terminated[i] = bool(terminated) and not timeout
            self._truncated[i] = timeout
            self._won[i] = won
            self._read(i)
        info = {"battle_won": self._won.clone().to(self.device)}
        return (
            reward.to(self.device),
            self._terminated.clone().to(self.device),
            self._truncated.clone().to(self.device),
            info,
        )

    def get_obs(self) -> torch.Tensor:
        return torch.as_tensor(np.stack(self._obs), device=self.device)  # [B, N, O]

    def get_state(self) -> torch.Tensor:
        return torch.as_tensor(np.stack(self._state), device=self.device)  # [B, S]

    def get_avail_actions(self) -> torch.Tensor:
        return torch.as_tensor(np.stack(self._avail), device=self.device)  # [B, N, A] bool

    def close(self) -> None:
        for env in self._envs:
            env.close()
