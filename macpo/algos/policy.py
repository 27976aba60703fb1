"""Action selection for the Collector: ε-greedy (training) or greedy (evaluation)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from macpo.nn.agent import RNNAgent


class EpsilonGreedyPolicy:
    """Runs the shared agent network one step at a time and picks available actions.

    ``epsilon`` is a callable so the schedule is read at each episode batch (0 → greedy).
    """

    def __init__(self, agent: RNNAgent, n_agents: int, n_actions: int, epsilon: Callable[[], float]):
        self.agent, self.n_agents, self.n_actions, self.epsilon = agent, n_agents, n_actions, epsilon

    def reset(self, batch_size: int) -> None:
        self.hidden = None
        dev = next(self.agent.parameters()).device
        self.last_actions = torch.zeros(batch_size, self.n_agents, dtype=torch.long, device=dev)
        self.first = True
        self.eps = float(self.epsilon())

    @torch.no_grad()
    def act(self, obs: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        b, n = obs.shape[:2]
        last = F.one_hot(self.last_actions, self.n_actions).to(obs.dtype)  # [B, N, A]
        if self.first:
            last.zero_()
            self.first = False
        ids = torch.eye(n, device=obs.device, dtype=obs.dtype).expand(b, n, n)  # [B, N, N]
        inputs = torch.cat([obs, last, ids], dim=-1)[:, None]  # [B, 1, N, I]
        q, self.hidden = self.agent(inputs, self.hidden)
        q = q[:, 0].masked_fill(~avail, float("-inf"))  # [B, N, A]
        actions = q.argmax(-1)  # [B, N]
        if self.eps > 0:
            random_actions = torch.multinomial(avail.float().view(b * n, -1), 1).view(b, n)
            explore = torch.rand(b, n, device=obs.device) < self.eps
            actions = torch.where(explore, random_actions, actions)
        self.last_actions = actions
        return actions
