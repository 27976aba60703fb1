"""``linear``: F.linear whose CPU float32 matmuls run through oneDNN, for the learners' mixers.

``nn.Linear`` on CPU calls MKL's sgemm, which stays on AVX2 on this project's AMD CPUs; oneDNN's
linear (``macpo.nn.fused_gru._linear``) runs AVX-512 kernels and measured ~2× faster at the
mixers' sizes (thousands of rows × 32–512 features), forward and for the input gradient. The
weight gradient stays an MKL ``mm`` (its transposed operands would need copies for oneDNN). Same
values up to float rounding; under autocast, on other devices or for few rows it is ``F.linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from macpo.nn.fused_gru import _fast_path, _linear


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
