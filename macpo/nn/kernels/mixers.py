"""The mixers' kernels: layers of QMIX's mixer and of the central Q* run a chunk of rows at a time.

- ``_MonotonicMix``: QMIX's first mixing layer Σ_n q_n·|w_n| + b, keeping w alone for the backward;
- ``_CentralMLP`` (``central_rows``: its forward): the central Q*'s MLP on rows, every intermediate
  chunk-sized, the state read in its storage dtype, weight gradients summed in float32.

Both compute what their modules' plain paths (``QMixer``, ``CentralMixer._rows``) compute with
autograd, with less memory; the modules call them when ``macpo.nn.kernels.enabled()``.
"""

from __future__ import annotations

import torch

from macpo.nn.kernels import matmul
from macpo.nn.kernels.matmul import _linear, _linear_relu, _mm_into


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
        for i in range(0, q.shape[0], matmul.ROWS_PER_CHUNK):
            j = slice(i, i + matmul.ROWS_PER_CHUNK)
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
        for i in range(0, q.shape[0], matmul.ROWS_PER_CHUNK):
            j = slice(i, i + matmul.ROWS_PER_CHUNK)
            gj = g[j, None, :]  # [m, 1, E]
            if need_q:
                dq[j] = (gj * w[j].abs()).sum(-1)
            if need_w:
                dw[j] = gj * q[j, :, None] * w[j].sgn()
        return dq, dw, g.to(ctx.b_dtype) if need_b else None


def central_rows(qs, s, ws, cd, acts=None) -> torch.Tensor:
    """``_CentralMLP``'s forward: Q* [M] from qs [M, N], s [M, S] and the weights ``ws`` in dtype cd,
    writing x1, x2, x3, v into ``acts`` ([M, E] ×4: what the backward reads), or without them
    through one chunk's buffers (the no-grad target network)."""
    w_s, b_s, w_q, w1, b1, w2, b2, w3, b3, w_o, b_o = ws
    m, e, rows = qs.shape[0], w1.shape[0], matmul.ROWS_PER_CHUNK
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
        grad_q, rows = grad_q.to(cd), matmul.ROWS_PER_CHUNK
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
