"""The batched multi-agent env protocol every env of the suite implements.

All tensors live on the env's ``device``; B = ``n_envs`` episodes run in lock-step.
An env whose episode has ended (terminated or truncated) keeps accepting actions until
the next ``reset()``: it stays frozen, returns reward 0 and ``terminated``/``truncated``
as they were, so a Collector can step all B envs until every one is done.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EnvInfo:
    """Static sizes a learner needs to build its networks and buffers."""

    n_agents: int
    n_actions: int
    obs_shape: int
    state_shape: int
    episode_limit: int
    obs_dtype: torch.dtype = torch.float32  # storage dtype for the replay buffer
    #: observations and state hold only 0 and 1 (e.g. occupancy grids): the replay buffer keeps them as bits
    binary_obs: bool = False


class BatchedEnv(ABC):
    """B parallel episodes of one multi-agent task, stepped with torch tensors.

    reset()        -> obs [B, N, O], state [B, S], avail [B, N, A] (bool)
    step(actions)  -> reward [B], terminated [B] (bool), truncated [B] (bool), info
                      (info may hold ``battle_won`` [B] bool)
    After ``step`` the new observation is read with ``get_obs/get_state/get_avail_actions``.
    """

    n_envs: int
    device: torch.device

    @property
    @abstractmethod
    def env_info(self) -> EnvInfo: ...

    @abstractmethod
    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    @abstractmethod
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]: ...

    @abstractmethod
    def get_obs(self) -> torch.Tensor: ...  # [B, N, O]

    @abstractmethod
    def get_state(self) -> torch.Tensor: ...  # [B, S]

    @abstractmethod
    def get_avail_actions(self) -> torch.Tensor: ...  # [B, N, A] bool

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release external resources (only adapters around real games need this)."""


class FixedInfoEnv(BatchedEnv):
    """A shape-only env for building learners of a given size (never stepped)."""

    def __init__(self, info: EnvInfo, device="cpu"):
        self.n_envs, self.device, self._info = 1, torch.device(device), info

    @property
    def env_info(self) -> EnvInfo:
        return self._info

    def reset(self, seed=None):
        raise NotImplementedError

    step = get_obs = get_state = get_avail_actions = reset
