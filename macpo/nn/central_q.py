"""The unrestricted central estimate Q*(s, u) used by Weighted QMIX and MAC-PO.

A separate agent network gives per-agent utilities; a feed-forward mixer with no monotonicity
constraint maps them and the state to Q*, plus a state-value head.
"""

from __future__ import annotations

import torch
from torch import nn

from macpo.nn.agent import RNNAgent


class CentralMixer(nn.Module):
    """[agent utilities ⊕ state] → embed → embed → embed → 1, plus V(state): unconstrained."""

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_agents + state_dim, embed_dim), nn.ReLU(),
            nn.Linear(embed_dim, embed_dim), nn.ReLU(),
            nn.Linear(embed_dim, embed_dim), nn.ReLU(),
            nn.Linear(embed_dim, 1),
        )  # fmt: skip
        self.value = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """agent_qs [*, N], state [*, S] → Q* [*] (* = B, T or packed rows R)."""
        x = torch.cat([agent_qs, state], dim=-1)  # [B, T, N + S]
        return (self.net(x) + self.value(state)).squeeze(-1)


class CentralQ(nn.Module):
    """Q*(s, u) for any joint action u: central agent utilities gathered at u, then mixed."""

    def __init__(self, input_dim: int, n_agents: int, n_actions: int, state_dim: int,
                 agent_hidden_dim: int = 64, embed_dim: int = 256):  # fmt: skip
        super().__init__()
        self.agent = RNNAgent(input_dim, n_actions, agent_hidden_dim)
        self.mixer = CentralMixer(n_agents, state_dim, embed_dim)

    def utilities(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs [B, T, N, I] → per-agent, per-action utilities [B, T, N, A]."""
        return self.agent(inputs)[0]

    def utilities_packed(self, inputs: torch.Tensor, step_sizes: list[int]) -> torch.Tensor:
        """Packed observation rows [R, N, I] → utilities [R, N, A] (see ``RNNAgent.forward_packed``)."""
        return self.agent.forward_packed(inputs, step_sizes)

    def value(self, utilities: torch.Tensor, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Q* at joint actions [*, N] given utilities [*, N, A] and state [*, S] → [*] (e.g. * = B, T or rows)."""
        chosen = utilities.gather(-1, actions[..., None]).squeeze(-1)  # [B, T, N]
        return self.mixer(chosen, state)
