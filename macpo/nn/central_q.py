"""The unrestricted central estimate Q*(s, u) used by Weighted QMIX and MAC-PO.

A separate agent network gives per-agent utilities; a feed-forward mixer with no monotonicity
constraint maps them and the state to Q*, plus a state-value head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from macpo.nn import fast_linear
from macpo.nn.agent import RNNAgent
from macpo.nn.fast_linear import _linear, _linear_relu, _mm_into, compute_dtype


def central_rows(qs, s, ws, cd, acts=None) -> torch.Tensor:
    """``_CentralMLP``'s forward: Q* [M] from qs [M, N], s [M, S] and the weights ``ws`` in dtype cd,
    writing x1, x2, x3, v into ``acts`` ([M, E] ×4: what the backward reads), or without them
    through one chunk's buffers (the no-grad target network)."""
    w_s, b_s, w_q, w1, b1, w2, b2, w3, b3, w_o, b_o = ws
    m, e, rows = qs.shape[0], w1.shape[0], fast_linear.ROWS_PER_CHUNK
    chunk = acts is None
    if chunk:
        acts = [torch.empty(min(m, rows), e, dtype=cd, device=qs.device) for _ in range(4)]
    q = torch.empty(m, dtype=cd, device=qs.device)  # [M]
    for i in range(0, m, rows):
        j = min(i + rows, m)
        x1, x2, x3, v = (a[: j - i] if chunk else a[i:j] for a in acts)
        y = _linear(s[i:j].to(cd), w_s, b_s)  # [c, 2E]: the net's and the value head's first layers
        torch.addmm(y[:, :e], qs[i:j].to(cd), w_q.t(), out=x1).clamp_min_(0.0)
        torch.clamp_min(y[:, e:], 0.0, out=v)
        x2.copy_(_linear_relu(x1, w1, b1))
        x3.copy_(_linear_relu(x2, w2, b2))
        q[i:j] = (torch.addmm(b3, x3, w3.t()) + torch.addmm(b_o, v, w_o.t())).squeeze(-1)
    return q


class _CentralMLP(torch.autograd.Function):
    """The central mixer on rows, a chunk at a time: (qs [M, N], s [M, S] data) → Q* [M].

    x1 = relu(s W_sᵀ + qs W_qᵀ + b_0), x2, x3 = relu(· Wᵀ + b), v = relu(s W_vᵀ + b_v) (W_s and W_v
    stacked as ``w_s``), Q* = x3 w_3ᵀ + b_3 + v w_oᵀ + b_o. Autograd of the layers written out
    keeps the same four [M, E] activations but streams [M, E] gradients (and an [M, 2E] first
    layer) through memory: at predator-prey size that was ~100 MB on top at the start of every
    backward. Here every such intermediate is chunk-sized; the weight gradients are summed over
    chunks in float32. s stays in its storage dtype (cast a chunk at a time).
    """

    @staticmethod
    def forward(ctx, qs, s, w_s, b_s, w_q, w1, b1, w2, b2, w3, b3, w_o, b_o, cd):
        params = (w_s, b_s, w_q, w1, b1, w2, b2, w3, b3, w_o, b_o)
        ws = [w.to(cd).contiguous() for w in params]
        acts = [torch.empty(qs.shape[0], w1.shape[0], dtype=cd, device=qs.device) for _ in range(4)]  # [M, E] ×4
        q = central_rows(qs, s, ws, cd, acts)
        ctx.save_for_backward(qs, s, *ws, *acts)
        ctx.cd, ctx.param_dtypes, ctx.qs_dtype = cd, [w.dtype for w in params], qs.dtype
        return q

    @staticmethod
    def backward(ctx, grad_q):
        qs, s, w_s, b_s, w_q, w1, b1, w2, b2, w3, b3, w_o, b_o, *acts = ctx.saved_tensors
        cd, m = ctx.cd, qs.shape[0]
        weights = (w_s, b_s, w_q, w1, b1, w2, b2, w3, b3, w_o, b_o)
        acc = [torch.zeros(w.shape, dtype=torch.promote_types(dt, torch.float32), device=w.device)
               for w, dt in zip(weights, ctx.param_dtypes)]  # fmt: skip
        dw_s, db_s, dw_q, dw1, db1, dw2, db2, dw3, db3, dw_o, db_o = acc
        dqs = torch.empty(qs.shape, dtype=cd, device=qs.device) if ctx.needs_input_grad[0] else None
        grad_q, rows = grad_q.to(cd), fast_linear.ROWS_PER_CHUNK
        for i in range(0, m, rows):
            j = min(i + rows, m)
            x1, x2, x3, v = (a[i:j] for a in acts)
            g = grad_q[i:j, None]  # [c, 1]
            _mm_into(dw3, g.t(), x3)
            _mm_into(dw_o, g.t(), v)
            db3 += g.sum(0, dtype=db3.dtype)
            db_o += g.sum(0, dtype=db_o.dtype)
            d3 = torch.ops.aten.threshold_backward(g * w3, x3, 0)  # [c, E] ∂/∂(x3's pre-activation)
            _mm_into(dw2, d3.t(), x2)
            db2 += d3.sum(0, dtype=db2.dtype)
            d2 = torch.ops.aten.threshold_backward(d3 @ w2, x2, 0)
            _mm_into(dw1, d2.t(), x1)
            db1 += d2.sum(0, dtype=db1.dtype)
            d1 = torch.ops.aten.threshold_backward(d2 @ w1, x1, 0)
            dv = torch.ops.aten.threshold_backward(g * w_o, v, 0)
            d_first = torch.cat([d1, dv], dim=1)  # [c, 2E]
            _mm_into(dw_s, d_first.t(), s[i:j].to(cd))
            db_s += d_first.sum(0, dtype=db_s.dtype)
            qc = qs[i:j].to(cd)
            _mm_into(dw_q, d1.t(), qc)
            if dqs is not None:
                dqs[i:j] = d1 @ w_q
        grads = [a.to(dt) for a, dt in zip(acc, ctx.param_dtypes)]
        return (None if dqs is None else dqs.to(ctx.qs_dtype), None, *grads, None)


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
        """agent_qs [*, N], state [*, S] (float or a storage dtype) → Q* [*] (* = B, T or packed rows R).

        On the CPU the rows run through ``_CentralMLP`` a chunk at a time (with or without autograd);
        the first layers of both heads read the state in one matmul (``net``'s first layer split
        into its agent-utility and state columns, so [agent_qs ⊕ state] is never built).
        """
        lead, n = agent_qs.shape[:-1], agent_qs.shape[-1]
        qs, s = agent_qs.reshape(-1, n), state.reshape(-1, state.shape[-1])  # [BT, N], [BT, S]
        first, v_first = self.net[0], self.value[0]
        w_s = torch.cat([first.weight[:, n:], v_first.weight])  # [2E, S]
        b_s = torch.cat([first.bias, v_first.bias])  # [2E]
        if qs.device.type != "cpu":  # the layers as written (autograd, the device's kernels)
            return self._rows(qs, s.to(w_s.dtype), w_s, b_s).view(lead)
        cd = compute_dtype(first.weight)
        layers = (self.net[2], self.net[4], self.net[6], self.value[2])
        weights = (w_s, b_s, first.weight[:, :n], *(p for layer in layers for p in (layer.weight, layer.bias)))
        with torch.autocast("cpu", enabled=False):
            if torch.is_grad_enabled() and (qs.requires_grad or any(w.requires_grad for w in weights)):
                q = _CentralMLP.apply(qs, s, *weights, cd)
            else:
                q = central_rows(qs, s, [w.to(cd).contiguous() for w in weights], cd)
        return q.view(lead)

    def _rows(self, qs: torch.Tensor, s: torch.Tensor, w_s: torch.Tensor, b_s: torch.Tensor) -> torch.Tensor:
        """qs [M, N], s [M, S] → Q* [M], written out (what ``_CentralMLP`` computes)."""
        n, first = qs.shape[-1], self.net[0]
        y_net, y_v = F.linear(s, w_s, b_s).split([first.out_features, self.value[0].out_features], dim=-1)
        x = F.relu(y_net + F.linear(qs, first.weight[:, :n]))  # [M, E]
        for layer in (self.net[2], self.net[4]):
            x = F.relu(layer(x))
        return (self.net[6](x) + self.value[2](F.relu(y_v))).squeeze(-1)


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
