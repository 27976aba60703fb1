"""QMIX's monotonic mixing network: Q_tot from agent utilities, weights from the state."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from macpo.nn import fast_linear
from macpo.nn.fast_linear import data_linear, linear


class _MonotonicMix(torch.autograd.Function):
    """Σ_n q_n·|w_n| + b: QMIX's first mixing layer, q [M, N], w [M, N, E] (before |·|), b [M, E] → [M, E].

    Autograd of the written-out ``(q[..., None] * w.abs()).sum(1) + b`` keeps |w| as well as w and
    builds the [M, N, E] product (26 MB each at predator-prey size); this keeps w alone and works a
    chunk of rows at a time, with the same operations (so the same values).
    """

    @staticmethod
    def forward(ctx, q, w, b):
        dtype = torch.promote_types(torch.promote_types(q.dtype, w.dtype), b.dtype)  # as the written-out sum's
        out = torch.empty(b.shape, dtype=dtype, device=b.device)  # [M, E]
        for i in range(0, q.shape[0], fast_linear.ROWS_PER_CHUNK):
            j = slice(i, i + fast_linear.ROWS_PER_CHUNK)
            torch.add((q[j, :, None] * w[j].abs()).sum(1), b[j], out=out[j])
        ctx.save_for_backward(q, w)
        ctx.b_dtype = b.dtype
        return out

    @staticmethod
    def backward(ctx, g):
        q, w = ctx.saved_tensors
        need_q, need_w, need_b = ctx.needs_input_grad
        dq = torch.empty_like(q) if need_q else None  # [M, N]
        dw = torch.empty_like(w) if need_w else None  # [M, N, E]
        for i in range(0, q.shape[0], fast_linear.ROWS_PER_CHUNK):
            j = slice(i, i + fast_linear.ROWS_PER_CHUNK)
            gj = g[j, None, :]  # [m, 1, E]
            if need_q:
                dq[j] = (gj * w[j].abs()).sum(-1)
            if need_w:
                dw[j] = gj * q[j, :, None] * w[j].sgn()
        return dq, dw, g.to(ctx.b_dtype) if need_b else None


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
        qs = agent_qs.reshape(-1, n, 1)  # [BT, N, 1]
        s = state.reshape(qs.shape[0], -1)  # [BT, S]
        # The four hypernetworks' first layers all read the state: one matmul for them
        # (reads s once; wider matmuls run faster), split after.
        firsts = (self.hyper_w1[0], self.hyper_b1, self.hyper_w2[0], self.hyper_b2[0])
        w = torch.cat([m.weight for m in firsts])  # [H + E + H + E, S]
        b = torch.cat([m.bias for m in firsts])
        y = data_linear(s, w, b)  # [BT, H + E + H + E] (s may be in a storage dtype)
        a_w1, b1, a_w2, a_b2 = y.split([m.out_features for m in firsts], dim=-1)
        # Broadcast-multiply-and-sum instead of bmm: bmm over tens of thousands of 1×N by N×E
        # products is several times slower on CPU, and the result is the same.
        w1 = linear(F.relu(a_w1), self.hyper_w1[2].weight, self.hyper_w1[2].bias)  # [BT, N·E] before |·|
        hidden = F.elu(_MonotonicMix.apply(qs.view(-1, n), w1.view(-1, n, self.embed_dim), b1))  # [BT, E]
        w2 = linear(F.relu(a_w2), self.hyper_w2[2].weight, self.hyper_w2[2].bias).abs()  # [BT, E]
        b2 = F.linear(F.relu(a_b2), self.hyper_b2[2].weight, self.hyper_b2[2].bias).squeeze(-1)  # [BT]
        return ((hidden * w2).sum(-1) + b2).view(lead)
