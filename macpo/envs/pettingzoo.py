"""PettingZoo both ways: our batched envs as a ``ParallelEnv``, and PettingZoo envs as a ``BatchedEnv``.

- ``ParallelEnvView`` shows one episode of any ``BatchedEnv`` (built with ``n_envs=1``) through the
  PettingZoo Parallel API: agents ``agent_0..``, flat ``Box`` observations, ``Discrete`` actions,
  the action mask in ``infos[agent]["action_mask"]``, ``state()``. The team is cooperative, so every
  agent receives the team reward; all agents stay in ``agents`` until the team episode ends (an
  agent removed inside the game just sees zeros and its mask).
- ``PettingZooBatchedEnv`` runs B copies of any discrete-action PettingZoo ``ParallelEnv`` (given
  by module path, built with ``module.parallel_env(**env_kwargs)``) as our ``BatchedEnv``.
- ``parallel_env(target=...)`` builds a ``ParallelEnvView`` from a ``BatchedEnv`` class path, so
  this module itself is a PettingZoo-style env module (``env.name=macpo.envs.pettingzoo``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv

from macpo.envs.base import BatchedEnv, EnvInfo

UNAVAILABLE_ACTION_RULES = ("pass", "raise", "first_available")
TEAM_REWARDS = ("sum", "mean")


class ParallelEnvView(ParallelEnv):
    """One episode of a ``BatchedEnv`` (n_envs=1) as a PettingZoo ``ParallelEnv``.

    Args:
        env: a ``BatchedEnv`` with ``n_envs == 1``, or a zero-argument callable returning one.
        unavailable_action: what to do with an action the mask forbids: ``pass`` it to the env
            (our envs ignore them: a move off the grid fails), ``raise`` a ValueError, or replace it
            by the agent's ``first_available`` action.
    """

    metadata = {"name": "macpo_parallel_env_view", "render_modes": [], "is_parallelizable": True}
    render_mode = None

    def __init__(self, env: BatchedEnv | Callable[[], BatchedEnv], unavailable_action: str = "pass"):
        if not isinstance(env, BatchedEnv):
            env = env()
        if not isinstance(env, BatchedEnv):
            raise ValueError(f"env must be a BatchedEnv or a callable returning one, got {type(env).__name__}")
        if env.n_envs != 1:
            raise ValueError(f"ParallelEnvView shows one episode: build the env with n_envs=1, not {env.n_envs}")
        if unavailable_action not in UNAVAILABLE_ACTION_RULES:
            raise ValueError(
                f"unavailable_action must be one of {UNAVAILABLE_ACTION_RULES}, got {unavailable_action!r}"
            )
        self.env = env
        self.unavailable_action = unavailable_action
        info: EnvInfo = env.env_info
        self.env_info = info
        self.max_cycles = info.episode_limit
        self.possible_agents = [f"agent_{i}" for i in range(info.n_agents)]
        self.agents: list[str] = []
        box = spaces.Box(-np.inf, np.inf, shape=(info.obs_shape,), dtype=np.float32)
        self.observation_spaces = {a: box for a in self.possible_agents}
        self.action_spaces = {a: spaces.Discrete(info.n_actions) for a in self.possible_agents}
        self.state_space = spaces.Box(-np.inf, np.inf, shape=(info.state_shape,), dtype=np.float32)

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        obs, _, avail = self.env.reset(seed=seed)
        self.agents = list(self.possible_agents)
        return self._observations(obs), self._infos(avail, {})

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            return {}, {}, {}, {}, {}
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"actions are missing for agents {missing}")
        chosen = np.array([int(actions[a]) for a in self.possible_agents])  # [N]
        avail = self.env.get_avail_actions()[0].detach().cpu().numpy().astype(bool)  # [N, A] current
        forbidden = ~avail[np.arange(len(chosen)), chosen]  # [N]
        if forbidden.any() and self.unavailable_action == "raise":
            names = [a for a, f in zip(self.possible_agents, forbidden) if f]
            raise ValueError(f"unavailable actions for agents {names} (unavailable_action='raise')")
        if forbidden.any() and self.unavailable_action == "first_available":
            chosen = np.where(forbidden, avail.argmax(axis=1), chosen)
        action_tensor = torch.as_tensor(chosen, device=self.env.device).view(1, -1)  # [1, N]
        reward, terminated, truncated, info = self.env.step(action_tensor)
        team_reward = float(reward[0])
        done_te, done_tr = bool(terminated[0]), bool(truncated[0])
        obs = self._observations(self.env.get_obs())
        infos = self._infos(self.env.get_avail_actions(), info)
        rewards = dict.fromkeys(self.agents, team_reward)
        terminations = dict.fromkeys(self.agents, done_te)
        truncations = dict.fromkeys(self.agents, done_tr and not done_te)
        if done_te or done_tr:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        return self.env.get_state()[0].detach().cpu().numpy().astype(np.float32)  # [S]

    def render(self) -> None:
        return None

    def close(self) -> None:
        self.env.close()

    def _observations(self, obs: torch.Tensor) -> dict[str, np.ndarray]:
        obs = obs[0].detach().cpu().numpy().astype(np.float32)  # [N, O]
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}

    def _infos(self, avail: torch.Tensor, info: dict) -> dict[str, dict]:
        masks = avail[0].detach().cpu().numpy().astype(np.int8)  # [N, A]
        extra = {k: v[0].item() for k, v in info.items() if torch.is_tensor(v) and v.dim() == 1}
        return {agent: {"action_mask": masks[i], **extra} for i, agent in enumerate(self.possible_agents)}


def parallel_env(target: str, unavailable_action: str = "pass", seed: int | None = None, **env_kwargs):
    """A ``ParallelEnvView`` of the ``BatchedEnv`` class at dotted path ``target`` built with ``env_kwargs``.

    Makes this module usable wherever a PettingZoo env module is expected, e.g.
    ``PettingZooBatchedEnv("macpo.envs.pettingzoo", ..., env_kwargs={"target": "...PredatorPrey"})``.
    """
    module_name, _, class_name = target.rpartition(".")
    try:
        env_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"target {target!r} is not an importable BatchedEnv class: {err}") from err
    env = env_class(n_envs=1, seed=seed, **env_kwargs)
    return ParallelEnvView(env, unavailable_action=unavailable_action)


class PettingZooBatchedEnv(BatchedEnv):
    """B copies of a discrete-action PettingZoo ``ParallelEnv`` as one ``BatchedEnv``.

    The agents are fixed by ``possible_agents``. An agent that has left the game while others play
    on is dead: zero observation, only action 0 available, no action sent for it. In the step that
    ends the episode, the observations and masks returned for the last agents are kept (a truncated
    episode bootstraps from them).
    Observations are flattened to float32 and zero-padded to the largest agent's size; actions are
    padded (unavailable) to the largest action space. State is ``env.state()`` where the env has one,
    else the concatenated observations. Availability comes from ``infos[agent]["action_mask"]`` (or an
    ``{"observation", "action_mask"}`` observation dict) where present, else all actions.
    The team reward is the ``sum`` (or ``mean`` over all agents) of the agents' rewards. An episode
    ends when every agent has finished; it counts as truncated if an agent was truncated in the last
    step (its future is not zero), else terminated. Reaching ``episode_limit`` also truncates.

    Args:
        module: dotted path of a PettingZoo env module with ``parallel_env(**env_kwargs)``.
        n_envs, device, seed: as for every ``BatchedEnv``; copy i is reset with ``seed + i``.
        env_kwargs: keyword arguments of ``parallel_env``.
        team_reward: ``sum`` or ``mean`` of the agents' rewards.
        episode_limit: defaults to ``env_kwargs["max_cycles"]`` or the env's ``max_cycles``.
    """

    def __init__(
        self,
        module: str,
        n_envs: int,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        env_kwargs: dict | None = None,
        team_reward: str = "sum",
        episode_limit: int | None = None,
    ):
        if not isinstance(n_envs, int) or n_envs <= 0:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
        if team_reward not in TEAM_REWARDS:
            raise ValueError(f"env.team_reward must be one of {TEAM_REWARDS}, got {team_reward!r}")
        try:
            env_module = importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"env.module {module!r} cannot be imported: {err}") from err
        if not hasattr(env_module, "parallel_env"):
            raise ValueError(f"env.module {module!r} has no parallel_env(): not a PettingZoo env module")
        env_kwargs = dict(env_kwargs or {})
        self.module = module
        self.n_envs = n_envs
        self.device = torch.device(device)
        self.team_reward = team_reward
        self.seed = seed
        # a Python loop over the B copies is unavoidable: each copy is an independent Python object
        self.envs: list[ParallelEnv] = [env_module.parallel_env(**env_kwargs) for _ in range(n_envs)]
        first = self.envs[0]
        self.agent_ids = list(first.possible_agents)
        for agent in self.agent_ids:
            if not isinstance(first.action_space(agent), spaces.Discrete):
                raise ValueError(
                    f"env.module {module!r}: agent {agent} has a non-discrete action space "
                    f"{first.action_space(agent)}; only Discrete actions are supported"
                )
        self._obs_spaces = {a: self._observation_part(first.observation_space(a)) for a in self.agent_ids}
        self._obs_sizes = [spaces.flatdim(self._obs_spaces[a]) for a in self.agent_ids]
        self._n_actions = [int(first.action_space(a).n) for a in self.agent_ids]
        n, o, a = len(self.agent_ids), max(self._obs_sizes), max(self._n_actions)
        self._episode_limit = episode_limit or env_kwargs.get("max_cycles") or _max_cycles(first)
        if not self._episode_limit:
            raise ValueError(f"env.module {module!r} does not say its episode length: set env.episode_limit")

        self._obs = np.zeros((n_envs, n, o), dtype=np.float32)  # [B, N, O]
        self._avail = np.zeros((n_envs, n, a), dtype=bool)  # [B, N, A]
        self._state: np.ndarray | None = None  # [B, S]
        self._has_state = True
        self._t = np.zeros(n_envs, dtype=np.int64)
        self._terminated = np.zeros(n_envs, dtype=bool)
        self._truncated = np.zeros(n_envs, dtype=bool)
        self.reset(seed=seed)
        self._env_info = EnvInfo(
            n_agents=n,
            n_actions=a,
            obs_shape=o,
            state_shape=self._state.shape[1],
            episode_limit=int(self._episode_limit),
            obs_dtype=torch.float32,
        )

    @property
    def env_info(self) -> EnvInfo:
        return self._env_info

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reset every copy (copy i with ``seed + i`` when a seed is given, else continuing its RNG)."""
        for b, env in enumerate(self.envs):
            obs, infos = env.reset(seed=None if seed is None else seed + b)
            self._read(b, obs, infos)
        self._t[:] = 0
        self._terminated[:] = False
        self._truncated[:] = False
        return self.get_obs(), self.get_state(), self.get_avail_actions()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        n = len(self.agent_ids)
        if tuple(actions.shape) != (self.n_envs, n):
            raise ValueError(
                f"actions must have shape [n_envs, n_agents] = {[self.n_envs, n]}, got {list(actions.shape)}"
            )
        actions = actions.detach().cpu().numpy()  # [B, N]
        reward = np.zeros(self.n_envs, dtype=np.float32)
        battle_won = np.zeros(self.n_envs, dtype=bool)
        for b, env in enumerate(self.envs):
            if self._terminated[b] or self._truncated[b]:
                continue  # frozen until reset
            live = set(env.agents)
            step_actions = {a: int(actions[b, i]) for i, a in enumerate(self.agent_ids) if a in live}
            obs, rewards, terminations, truncations, infos = env.step(step_actions)
            total = float(sum(rewards.values()))
            reward[b] = total if self.team_reward == "sum" else total / n
            battle_won[b] = any(bool(info.get("battle_won", False)) for info in infos.values())
            self._read(b, obs, infos)
            self._t[b] += 1
            if not env.agents:  # every agent has finished
                cut = any(truncations.get(a, False) and not terminations.get(a, False) for a in live)
                self._truncated[b], self._terminated[b] = cut, not cut
            elif self._t[b] >= self._episode_limit:
                self._truncated[b] = True
        info = {"battle_won": torch.as_tensor(battle_won, device=self.device)}
        terminated = torch.as_tensor(self._terminated.copy(), device=self.device)  # [B]
        truncated = torch.as_tensor(self._truncated.copy(), device=self.device)  # [B]
        return torch.as_tensor(reward, device=self.device), terminated, truncated, info

    def get_obs(self) -> torch.Tensor:
        return torch.as_tensor(self._obs, device=self.device).clone()  # [B, N, O]

    def get_state(self) -> torch.Tensor:
        return torch.as_tensor(self._state, device=self.device).clone()  # [B, S]

    def get_avail_actions(self) -> torch.Tensor:
        return torch.as_tensor(self._avail, device=self.device).clone()  # [B, N, A]

    def close(self) -> None:
        for env in self.envs:
            env.close()

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _observation_part(space: spaces.Space) -> spaces.Space:
        """The observation inside an ``{"observation", "action_mask"}`` dict space, else the space."""
        if isinstance(space, spaces.Dict) and "observation" in space.spaces and "action_mask" in space.spaces:
            return space["observation"]
        return space

    def _read(self, b: int, obs: dict, infos: dict) -> None:
        """Store copy b's observations, availability and state after a reset or step."""
        env = self.envs[b]
        present = set(env.agents) or set(obs)  # the last agents stay readable when the episode ends
        self._obs[b] = 0
        self._avail[b] = False
        self._avail[b, :, 0] = True  # dead agents: only action 0
        for i, agent in enumerate(self.agent_ids):
            if agent not in present or agent not in obs:
                continue
            agent_obs, mask = obs[agent], infos.get(agent, {}).get("action_mask")
            if isinstance(agent_obs, dict) and "action_mask" in agent_obs:
                agent_obs, mask = agent_obs["observation"], agent_obs["action_mask"]
            flat = spaces.flatten(self._obs_spaces[agent], agent_obs).astype(np.float32)
            self._obs[b, i, : flat.size] = flat
            n_actions = self._n_actions[i]
            self._avail[b, i, :n_actions] = True if mask is None else np.asarray(mask, dtype=bool)[:n_actions]
        state = self._env_state(env)
        if state is None:
            state = self._obs[b].reshape(-1)
        if self._state is None:
            self._state = np.zeros((self.n_envs, state.size), dtype=np.float32)
        self._state[b] = state

    def _env_state(self, env: ParallelEnv) -> np.ndarray | None:
        if not self._has_state:
            return None
        try:
            return np.asarray(env.state(), dtype=np.float32).reshape(-1)
        except (NotImplementedError, AttributeError):
            self._has_state = False
            return None


def _max_cycles(env: ParallelEnv) -> int | None:
    """The episode length a PettingZoo env declares (``max_cycles`` on it or its inner game), if any."""
    unwrapped = env.unwrapped
    for holder in (env, unwrapped, getattr(unwrapped, "env", None)):
        value = getattr(holder, "max_cycles", None)
        if isinstance(value, int) and value > 0:
            return value
    return None
