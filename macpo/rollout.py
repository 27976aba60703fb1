"""Collector: plays B episodes at once on a batched env and returns them as one episode batch."""

from __future__ import annotations

from typing import Protocol

import torch

from macpo.envs.base import BatchedEnv


class Policy(Protocol):
    """What the Collector needs from a learner: a recurrent action selector."""

    def reset(self, batch_size: int) -> None: ...

    def act(self, obs: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """obs [B, N, O], avail [B, N, A] bool → actions [B, N] long."""
        ...


class Collector:
    """Runs a policy on a batched env until every episode in the batch has ended."""

    def __init__(self, env: BatchedEnv) -> None:
        self.env = env
        self.info = env.env_info

    @torch.no_grad()
    def run(self, policy: Policy, seed: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Play one batch of episodes.

        Returns the episodes as tensors [B, T+1, ...] (obs, state, avail_actions, actions, reward,
        terminated, filled — ``filled[:, t]`` marks real transitions, index = episode length holds
        the final observation) and per-episode stats [B]: return, length, and battle_won where the env reports it.
        Acting runs in the policy's own precision even inside a mixed-precision training step
        (autocast off): the same seed plays the same episodes whatever ``trainer.precision`` is.
        """
        with torch.autocast(self.env.device.type, enabled=False):
            return self._run(policy, seed)

    def _run(self, policy: Policy, seed: int | None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        env, info = self.env, self.info
        b, n, lim = env.n_envs, info.n_agents, info.episode_limit
        dev = env.device
        obs, state, avail = env.reset(seed=seed)
        ep = {
            "obs": torch.zeros(b, lim + 1, n, info.obs_shape, device=dev),  # [B, T+1, N, O]
            "state": torch.zeros(b, lim + 1, info.state_shape, device=dev),  # [B, T+1, S]
            "avail_actions": torch.zeros(b, lim + 1, n, info.n_actions, dtype=torch.bool, device=dev),
            "actions": torch.zeros(b, lim + 1, n, dtype=torch.long, device=dev),  # [B, T+1, N]
            "reward": torch.zeros(b, lim + 1, device=dev),  # [B, T+1]
            "terminated": torch.zeros(b, lim + 1, dtype=torch.bool, device=dev),
            "filled": torch.zeros(b, lim + 1, dtype=torch.bool, device=dev),
        }
        # per step only raw writes; the masks by `filled` are applied once at the end
        active = torch.ones(b, dtype=torch.bool, device=dev)  # [B] episode still running
        won = torch.zeros(b, lim + 1, dtype=torch.bool, device=dev)  # [B, T+1] battle_won as reported
        reports_won = False
        policy.reset(b)
        t = 0
        for t in range(lim):
            ep["obs"][:, t], ep["state"][:, t], ep["avail_actions"][:, t] = obs, state, avail
            actions = policy.act(obs, avail)  # [B, N]
            reward, terminated, truncated, step_info = env.step(actions)
            ep["actions"][:, t], ep["reward"][:, t], ep["terminated"][:, t] = actions, reward, terminated
            ep["filled"][:, t] = active
            if "battle_won" in step_info:
                reports_won = True
                won[:, t] = step_info["battle_won"].bool()
            active = active & ~(terminated | truncated)
            obs, state, avail = env.get_obs(), env.get_state(), env.get_avail_actions()
            if not bool(active.any()):  # one host sync per step (free on CPU)
                break
        last = t + 1
        ep["obs"][:, last], ep["state"][:, last], ep["avail_actions"][:, last] = obs, state, avail
        filled = ep["filled"]
        ep["reward"].mul_(filled)
        ep["terminated"].logical_and_(filled)
        stats = {
            "return": ep["reward"].sum(1),  # [B]
            "length": filled.sum(1).float(),  # [B]
        }
        if reports_won:  # only envs with a notion of winning report it
            stats["battle_won"] = (won & filled).any(1).float()
        # trim the time axis to what this batch used; the buffer pads the rest
        return {k: v[:, : last + 1] for k, v in ep.items()}, stats


class RandomPolicy:
    """Uniform over each agent's available actions: the baseline a learner must beat."""

    def reset(self, batch_size: int) -> None:
        pass

    def act(self, obs: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        b, n, a = avail.shape
        return torch.multinomial(avail.float().view(b * n, a), 1).view(b, n)
