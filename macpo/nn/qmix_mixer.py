"""QMIX's monotonic mixing network: Q_tot from agent utilities, weights from the state."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from macpo.nn import kernels
from macpo.nn.kernels.matmul import data_linear, linear
from macpo.nn.kernels.mixers import _MonotonicMix


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
        """agent_qs [*, N], state [*, S] (float or a storage dtype: uint8/float16) → Q_tot [*] (* = B, T, rows R)."""
        lead, n = agent_qs.shape[:-1], agent_qs.shape[-1]
        qs = agent_qs.reshape(-1, n)  # [M, N]
        s = state.reshape(qs.shape[0], -1)  # [M, S]
        q = self._kernel_rows(qs, s) if kernels.enabled() else self._rows(qs, s)  # [M]
        return q.view(lead)

    def _rows(self, qs: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """qs [M, N], s [M, S] → Q_tot [M] through the layers as written (autograd; ``nn.kernels=torch``)."""
        s = s.to(self.hyper_b1.weight.dtype)
        w1 = self.hyper_w1(s).abs().view(-1, self.n_agents, self.embed_dim)  # [M, N, E]
        hidden = F.elu((qs[..., None] * w1).sum(1) + self.hyper_b1(s))  # [M, E]
        w2 = self.hyper_w2(s).abs()  # [M, E]
        return (hidden * w2).sum(-1) + self.hyper_b2(s).squeeze(-1)

    def _kernel_rows(self, qs: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """What ``_rows`` computes, through the kernels: the state in its storage dtype, the first
        mixing layer keeping w alone (``_MonotonicMix``)."""
        # The four hypernetworks' first layers all read the state: one matmul for them
        # (reads s once; wider matmuls run faster), split after.
        firsts = (self.hyper_w1[0], self.hyper_b1, self.hyper_w2[0], self.hyper_b2[0])
        w = torch.cat([m.weight for m in firsts])  # [H + E + H + E, S]
        b = torch.cat([m.bias for m in firsts])
        y = data_linear(s, w, b)  # [M, H + E + H + E] (s may be in a storage dtype)
        a_w1, b1, a_w2, a_b2 = y.split([m.out_features for m in firsts], dim=-1)
        # Broadcast-multiply-and-sum instead of bmm: bmm over tens of thousands of 1×N by N×E
        # products is several times slower on CPU, and the result is the same.
        w1 = linear(F.relu(a_w1), self.hyper_w1[2].weight, self.hyper_w1[2].bias)  # [M, N·E] before |·|
        hidden = F.elu(_MonotonicMix.apply(qs, w1.view(-1, qs.shape[-1], self.embed_dim), b1))  # [M, E]
        w2 = linear(F.relu(a_w2), self.hyper_w2[2].weight, self.hyper_w2[2].bias).abs()  # [M, E]
        b2 = F.linear(F.relu(a_b2), self.hyper_b2[2].weight, self.hyper_b2[2].bias).squeeze(-1)  # [M]
        return (hidden * w2).sum(-1) + b2
