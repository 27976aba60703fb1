"""``FusedGRU``: an ``nn.GRU`` whose single-layer CPU path runs the packed GRU kernel.

The kernel (``macpo.nn.kernels.gru``) walks a packed batch with a hand-written backward; it is what
makes a learner update fast. ``FusedGRU`` has ``nn.GRU``'s parameters, initialisation and
``state_dict`` and gives its results up to float rounding; it hands to ``nn.GRU`` what the kernel
does not cover (CUDA, where cuDNN is faster; several layers; bidirectional; no bias) and everything
when ``nn.kernels=torch`` (``macpo.nn.kernels``).

Two entry points:

- ``packed(x, step_rows)``: a packed batch (learner updates; ``PackedSequence``'s layout);
- ``forward(x, hx)``: ``nn.GRU``'s, for sequences of equal length, with several batch dims allowed,
  ``x [T, *batch, I]`` with any strides; on the kernel path it is the packed walk with M = Π batch
  sequences at every step, and ``h_seq`` comes back laid out in memory like ``x``. Acting (one step
  of every env with a carried hidden state, no autograd) runs PyTorch's own GRU cell instead: for
  a few hundred rows the walk's per-step Python costs more than the step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from macpo.nn import kernels
from macpo.nn.kernels.gru import packed_gru
from macpo.nn.kernels.matmul import compute_dtype


def _empty_like_layout(x: torch.Tensor, last: int, dtype: torch.dtype) -> torch.Tensor:
    """Uninitialised x.shape[:-1] + (last,), its dims ordered in memory as x's are (last dim innermost)."""
    outer = sorted(range(x.dim() - 1), key=x.stride, reverse=True)  # outermost first; ties keep order
    order = [*outer, x.dim() - 1]
    buf = x.new_empty([x.shape[d] for d in order[:-1]] + [last], dtype=dtype)
    return buf.permute([order.index(d) for d in range(x.dim())])


class FusedGRU(nn.GRU):
    """``nn.GRU`` whose single-layer CPU path runs ``packed_gru`` (same parameters and results).

    Also takes several batch dims, ``x [T, *batch, I]`` (``[*batch, T, I]`` with ``batch_first``)
    with ``hx [1, M, H]`` and returns ``h_n [1, M, H]``, where M = Π batch.
    """

    def fused_applies(self, x) -> bool:
        """Whether the kernel runs for input x (else ``nn.GRU``)."""
        return (kernels.enabled() and isinstance(x, torch.Tensor) and x.dim() >= 3 and x.device.type == "cpu"
                and self.num_layers == 1 and not self.bidirectional and self.bias)  # fmt: skip

    def forward(self, x, hx=None):
        if not self.fused_applies(x):
            if isinstance(x, torch.Tensor) and x.dim() > 3:  # several batch dims: nn.GRU wants one
                seq = x.movedim(-2, 0) if self.batch_first else x
                out, h_n = super().forward(seq.reshape(seq.shape[0], -1, seq.shape[-1]), hx)
                out = out.view(*seq.shape[:-1], self.hidden_size)
                return (out.movedim(0, -2) if self.batch_first else out), h_n
            return super().forward(x, hx)
        seq = x.movedim(-2, 0) if self.batch_first else x  # [T, *batch, I]
        t_len, batch, hd = seq.shape[0], seq.shape[1:-1], self.hidden_size
        m = math.prod(batch)
        if seq.shape[-1] != self.input_size:
            raise ValueError(
                f"FusedGRU input: last dim must be input_size={self.input_size}, got shape {tuple(x.shape)}"
            )
        if hx is None:
            hx = seq.new_zeros(1, m, hd)
        elif tuple(hx.shape) != (1, m, hd):
            raise ValueError(
                f"FusedGRU hx: expected shape (1, {m}, {hd}) = (layers, batch, "
                f"hidden_size) for input {tuple(x.shape)}, got {tuple(hx.shape)}"
            )
        rows = seq.reshape(t_len * m, seq.shape[-1])  # [T·M, I] time-major: M sequences at every step
        weights = (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        if t_len == 1 and not torch.is_grad_enabled():  # acting: one step, nothing to differentiate
            cd = compute_dtype(rows)  # bfloat16 under autocast, as the walk computes
            with torch.autocast(rows.device.type, enabled=False):
                h = torch.gru_cell(rows.to(cd), hx[0].to(cd), *(w.to(cd) for w in weights))  # [M, H]
        else:
            h = packed_gru(rows, hx[0], [m] * t_len, *weights)  # [T·M, H]
        h_seq = h.view(t_len, *batch, hd)  # [T, *batch, H], time-major
        if not seq.is_contiguous():  # laid out like x (the agent's transposed [B, T, N, H] view)
            h_seq = _empty_like_layout(seq, hd, h.dtype).copy_(h_seq)
        out = h_seq.movedim(0, -2) if self.batch_first else h_seq
        return out, h[(t_len - 1) * m :].view(1, m, hd)  # output, h_n [1, M, H]

    def packed(self, x: torch.Tensor, step_rows: list[int], fc_in=None, fc_out=None) -> torch.Tensor:
        """h [R, H] for a packed batch x [R, I] with ``step_rows[t]`` sequences at step t (from a zero state).

        ``fc_in = (w1, b1)``: the GRU reads relu(x w1ᵀ + b1) (x [R, I_0], any dtype that holds it
        exactly); ``fc_out = (w2, b2)``: returns h w2ᵀ + b2 [R, A]. Kernel path: ``packed_gru`` (the
        layers fused into its chunks); otherwise those layers around ``nn.GRU`` on the same rows as a
        ``PackedSequence`` (cuDNN on CUDA).
        """
        width = self.input_size if fc_in is None else fc_in[0].shape[1]
        if x.dim() != 2 or x.shape[-1] != width:
            raise ValueError(f"FusedGRU.packed: x must be [rows, {width}], got {tuple(x.shape)}")
        m0 = step_rows[0] if len(step_rows) else 0
        if not self.fused_applies(x.unsqueeze(0)):
            if fc_in is not None:
                x = F.relu(F.linear(x.to(fc_in[0].dtype), *fc_in))
            sizes = torch.as_tensor(list(step_rows), dtype=torch.int64)
            out, _ = super().forward(nn.utils.rnn.PackedSequence(x, sizes))
            return out.data if fc_out is None else F.linear(out.data, *fc_out)
        h0 = torch.zeros(m0, self.hidden_size, dtype=self.weight_hh_l0.dtype, device=x.device)
        return packed_gru(x, h0, step_rows, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0,
                          fc_in, fc_out)  # fmt: skip
