"""QMIX's monotonic mixing network: Q_tot from agent utilities, weights from the state."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QMixer(nn.Module):
    """Hypernetworks map the state to non-negative mixing weights (∂Q_tot/∂Q_a ≥ 0)."""

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int = 32, hypernet_dim: int = 64):
        super().__init__()
        self.n_agents, self.embed_dim = n_agents, embed_dim
        self.hyper_w1 = nn.Sequential(
            nn.Linear(state_dim, hypernet_dim), nn.ReLU(), nn.Linear(hypernet_dim, n_agents * embed_dim)
        )
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.hyper_w2 = nn.Sequential(nn.Linear(state_dim, hypernet_dim), nn.ReLU(), nn.Linear(hypernet_dim, embed_dim))
        self.hyper_b2 = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """agent_qs [B, T, N], state [B, T, S] → Q_tot [B, T]."""
        b, t, n = agent_qs.shape
        qs = agent_qs.reshape(b * t, 1, n)  # [BT, 1, N]
        s = state.reshape(b * t, -1)  # [BT, S]
        w1 = self.hyper_w1(s).abs().view(-1, n, self.embed_dim)  # [BT, N, E]
        b1 = self.hyper_b1(s).view(-1, 1, self.embed_dim)  # [BT, 1, E]
        hidden = F.elu(torch.bmm(qs, w1) + b1)  # [BT, 1, E]
        w2 = self.hyper_w2(s).abs().view(-1, self.embed_dim, 1)  # [BT, E, 1]
        b2 = self.hyper_b2(s).view(-1, 1, 1)  # [BT, 1, 1]
        return (torch.bmm(hidden, w2) + b2).view(b, t)
