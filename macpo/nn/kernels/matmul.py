"""The learners' CPU matmuls: oneDNN where it is faster, ``addmm`` elsewhere.

- kernels (``_linear``, ``_linear_add``, ``_linear_relu``, ``_mm_into``) shared by the GRU walk
  (``macpo.nn.kernels.gru``) and the mixers' kernels: ``nn.Linear`` on CPU calls MKL's sgemm, which
  stays on AVX2 on this project's AMD CPUs; oneDNN's linear runs AVX-512 kernels and measured ~2×
  faster at the learners' sizes (thousands of rows × 32–512 features), with ReLU or an addition fused in;
- ``linear``: F.linear through those kernels, for the mixers' layers (the weight gradient stays an
  MKL ``mm``: its transposed operands would need copies for oneDNN);
- ``data_linear``: a layer reading replay data (the state) kept in its storage dtype.

Same values up to float rounding; under autocast, on other devices, for few rows or with
``nn.kernels=torch`` (``macpo.nn.kernels``) ``linear`` and ``data_linear`` are ``F.linear``.
The size of oneDNN's kernel caches is set by ``macpo.nn.kernels.cap_kernel_caches``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from macpo.nn import kernels

try:  # oneDNN's linear, present in x86 (and oneDNN-enabled ARM) builds of PyTorch
    _onednn_linear = torch.ops.mkldnn._linear_pointwise
    USE_ONEDNN = torch.backends.mkldnn.is_available()
except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
    _onednn_linear, USE_ONEDNN = None, False
ONEDNN_MIN_ROWS = 128  # below this, oneDNN's per-call overhead outweighs its faster kernel (measured)


def _native_bf16() -> bool:
    try:
        return bool(torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


#: dtypes whose matmuls go through oneDNN (bfloat16 only where the CPU has native bf16 dot products)
ONEDNN_DTYPES = (torch.float32, torch.bfloat16) if _native_bf16() else (torch.float32,)


def _fast_path(x: torch.Tensor) -> bool:
    """Whether x's matmul goes through oneDNN (``torch.backends.mkldnn.enabled = False`` turns it off)."""
    return (USE_ONEDNN and x.dtype in ONEDNN_DTYPES and x.device.type == "cpu"
            and x.shape[0] >= ONEDNN_MIN_ROWS and torch.backends.mkldnn.enabled)  # fmt: skip


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """bfloat16/float16 where autocast is on for x's device, else x's own dtype."""
    dev = x.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return x.dtype


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x [M, K] (unit column stride) @ wᵀ (w [N, K] contiguous) + b → [M, N]."""
    if _fast_path(x):
        return _onednn_linear(x, w, b, "none", [], "")
    return x @ w.t() if b is None else torch.addmm(b, x, w.t())


def _linear_add(x: torch.Tensor, other: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """other [M, N] + x [M, K] @ wᵀ (w [N, K] contiguous) → [M, N]."""
    if _fast_path(x):
        return _onednn_linear.binary(x, other, w, None, "add")
    return torch.addmm(other, x, w.t())


def _mm_into(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc += a @ b, with acc float32 whatever the operands' precision (weight-gradient sums)."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
    else:
        acc += (a @ b).to(acc.dtype)


def _linear_relu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """relu(x @ wᵀ + b) → [M, N] (oneDNN fuses the ReLU into its matmul)."""
    if _fast_path(x):
        return _onednn_linear(x, w, b, "relu", [], "")
    return torch.addmm(b, x, w.t()).relu_()


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
    if (not kernels.enabled() or torch.is_autocast_enabled(x.device.type) or x.dtype != w.dtype
            or flat.stride(-1) != 1 or not _fast_path(flat)):  # fmt: skip
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
        acc = torch.promote_types(ctx.cd, torch.float32)  # bias sums in float32 or wider
        db = grad.sum(0, dtype=acc).to(ctx.w_dtype) if need_b and ctx.has_bias else None
        return None, dw, db, None


def data_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``linear`` for an input that is data, not an activation: x [*, K] in its storage dtype (uint8,
    float16, ...) → [*, N] in the compute dtype (w's, or autocast's), never holding a float copy of x.
    An x that needs a gradient, one off the CPU, or any with ``nn.kernels=torch`` takes ``linear`` on a
    cast copy."""
    cd = compute_dtype(w)
    if x.requires_grad or x.device.type != "cpu" or not kernels.enabled():
        return linear(x.to(w.dtype), w, b)
    lead = x.shape[:-1]
    with torch.autocast("cpu", enabled=False):
        out = _DataLinear.apply(x.reshape(-1, x.shape[-1]), w, b, cd)
    return out.view(*lead, w.shape[0])
