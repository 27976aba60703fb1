"""``linear``: F.linear whose CPU float32 matmuls run through oneDNN, for the learners' mixers;
``data_linear``: a layer reading replay data (the state) kept in its storage dtype.

``nn.Linear`` on CPU calls MKL's sgemm, which stays on AVX2 on this project's AMD CPUs; oneDNN's
linear (``macpo.nn.fused_gru._linear``) runs AVX-512 kernels and measured ~2× faster at the
mixers' sizes (thousands of rows × 32–512 features), forward and for the input gradient. The
weight gradient stays an MKL ``mm`` (its transposed operands would need copies for oneDNN). Same
values up to float rounding; under autocast, on other devices or for few rows it is ``F.linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from macpo.nn.fused_gru import _fast_path, _linear, _mm_into, compute_dtype


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _linear(x, w.contiguous(), b)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad = grad.contiguous()
        dx = _linear(grad, w.t().contiguous(), None) if need_x else None  # [M, K]
        dw = grad.t() @ x if need_w else None  # [N, K]
        db = grad.sum(0) if need_b and ctx.has_bias else None
        return dx, dw, db


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x [*, K] @ wᵀ (w [N, K]) + b → [*, N], like ``F.linear``."""
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    if torch.is_autocast_enabled(x.device.type) or x.dtype != w.dtype or flat.stride(-1) != 1 or not _fast_path(flat):
        return F.linear(x, w, b)
    return _OneDNNLinear.apply(flat, w, b).view(*lead, w.shape[0])


#: rows per chunk of the mixers' chunked layers (``data_linear``, QMIX's ``_MonotonicMix``, the central
#: Q*'s ``_CentralMLP``): a chunk's intermediates stay in cache, its matmuls stay large
ROWS_PER_CHUNK = 2048


class _DataLinear(torch.autograd.Function):
    """x [M, K] (data, no gradient; any dtype that holds it exactly, e.g. uint8 / float16) @ wᵀ + b.

    Autograd keeps x in its storage dtype and casts it a chunk at a time, forward and for the weight
    gradient, instead of a float copy of the whole input ([R, S] float32: 31 MB per copy at
    predator-prey size, two of them per update).
    """

    @staticmethod
    def forward(ctx, x, w, b, cd):
        wc, bc = w.to(cd).contiguous(), None if b is None else b.to(cd)
        out = torch.empty(x.shape[0], w.shape[0], dtype=cd, device=x.device)  # [M, N]
        for i in range(0, x.shape[0], ROWS_PER_CHUNK):
            out[i : i + ROWS_PER_CHUNK] = _linear(x[i : i + ROWS_PER_CHUNK].to(cd), wc, bc)
        ctx.save_for_backward(x)
        ctx.cd, ctx.w_dtype, ctx.has_bias = cd, w.dtype, b is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        _, need_w, need_b, _ = ctx.needs_input_grad
        grad = grad.to(ctx.cd)
        dw = None
        if need_w and ctx.cd == torch.float32:  # Σ over chunks of gradᵀ x
            dw = torch.zeros(grad.shape[1], x.shape[1], dtype=ctx.cd, device=x.device)
            for i in range(0, x.shape[0], ROWS_PER_CHUNK):
                _mm_into(dw, grad[i : i + ROWS_PER_CHUNK].t(), x[i : i + ROWS_PER_CHUNK].to(ctx.cd))
            dw = dw.to(ctx.w_dtype)
        elif need_w:  # bfloat16: one matmul (a cast copy of x while it runs), as autocast's F.linear does
            dw = (grad.t() @ x.to(ctx.cd)).to(ctx.w_dtype)
        db = grad.sum(0, dtype=torch.float32).to(ctx.w_dtype) if need_b and ctx.has_bias else None
        return None, dw, db, None


def data_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``linear`` for an input that is data, not an activation: x [*, K] in its storage dtype (uint8,
    float16, ...) → [*, N] in the compute dtype (w's, or autocast's), never holding a float copy of x.
    An x that needs a gradient, or one off the CPU, takes ``linear`` on a cast copy."""
    cd = compute_dtype(w)
    if x.requires_grad or x.device.type != "cpu":
        return linear(x.to(w.dtype), w, b)
    lead = x.shape[:-1]
    with torch.autocast("cpu", enabled=False):
        out = _DataLinear.apply(x.reshape(-1, x.shape[-1]), w, b, cd)
    return out.view(*lead, w.shape[0])
