"""The GRU walk over a packed batch, with a hand-written backward: what every learner update runs on CPU.

A packed batch holds at each step only the sequences still running, longest first (PyTorch's
``PackedSequence`` layout, ``macpo.nn.packing``): x [R, I] with R = Σ_t m_t rows, step t's rows
x[o_t : o_t + m_t], and the m_{t+1} sequences of step t+1 the first m_{t+1} of step t's. Each step
costs its real rows; a batch of equal-length sequences (acting: one step of every env) is the
special case m_t = M.

Autograd through ``nn.GRU`` on CPU records every timestep's matmuls and gate ops, and its backward
runs two small weight-gradient matmuls per step. Here time is walked in chunks of ~2k rows:

- forward: one matmul for the input projections of a chunk, then per step one ``h @ W_hhᵀ`` and a
  few gate ops; nothing but the outputs h is kept;
- backward: per chunk, the forward's gates recomputed from x and the saved h (two chunk-wide
  matmuls), then per step one elementwise product (the gate gradients) and one matmul for ∂h, and
  per chunk, while those gradients are still in cache, one matmul each for ∂x, ∂W_ih, ∂W_hh and
  sums for the biases (instead of autograd's per-step weight-gradient matmuls). An update's memory
  is its activations alone.

With the agent's input and output layers (``fc_in``/``fc_out``) fused in, their forward and backward
also run chunk by chunk (fc_in's ReLU output recomputed), so of the whole agent network only x and
h are kept: each layer's work stays in cache instead of streaming [R, H] tensors.

The equations are exactly PyTorch's (gate order r, z, n):

    r = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h' = (1 − z) ⊙ n + z ⊙ h

so ``macpo.nn.fused_gru.FusedGRU``, an ``nn.GRU`` with the same parameters, initialisation and
``state_dict``, runs this walk where it applies and ``nn.GRU`` elsewhere (CUDA, where cuDNN is
faster; ``nn.kernels=torch``; configurations it does not cover).

Besides the layout, three things make it faster on this project's CPUs (one thread, AMD Zen with
AVX-512): float32 matmuls go through oneDNN (``macpo.nn.kernels.matmul``), which runs AVX-512 kernels
where MKL's sgemm stays on AVX2 (2× here); ``tanh`` is computed as ``2σ(2a) − 1`` (PyTorch's CPU
``tanh`` kernel is ~10× slower than its ``sigmoid``; same value up to float rounding); and the big
intermediate tensors are chunk-sized, so they stay in cache. Under autocast
(``trainer.precision=bf16-mixed``) the matmuls and gates run in bfloat16 and the weight gradients
are summed in float32.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from macpo.nn.kernels.matmul import _linear, _linear_add, _linear_relu, _mm_into, compute_dtype

_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input  # (g, y, grad_input=out): g·y·(1 − y)
_tanh_backward = torch.ops.aten.tanh_backward.grad_input  # (g, y, grad_input=out): g·(1 − y²)

def _gate_factors(f, r, z, n, gh_n, diff, one, tmp) -> None:
    """Write ∂h_t/∂(pre-activations) of one GRU step into f [rows, 5, H] (order: _Z, _N_IN, _R, _ZG,
    _N_HID) from its gates r, z, n, the hidden part of n's pre-activation gh_n and diff = h_{t-1} − n
    (read first, so it may live in the scratch buffer tmp)."""
    _sigmoid_backward(diff, z, grad_input=f[:, _ZG])  # (h_{t-1} − n)·z(1 − z)
    f[:, _Z].copy_(z)  # ∂h_t/∂h_{t-1} along the direct path
    torch.sub(one, z, out=tmp)
    _tanh_backward(tmp, n, grad_input=f[:, _N_IN])  # (1 − z)(1 − n²)
    torch.mul(f[:, _N_IN], r, out=f[:, _N_HID])
    torch.mul(f[:, _N_IN], gh_n, out=tmp)
    _sigmoid_backward(tmp, r, grad_input=f[:, _R])


ROWS_PER_CHUNK = 2048  # sequences × timesteps per chunk: measured fastest at 1–3k rows for H = 64

# Backward factors of a chunk's rows, [rows, 5, H] in this block order so that both gate-gradient
# matrices are contiguous column ranges of a row: blocks 1..3 = ∂(input-side gate pre-activations)
# in (n, r, z) order, blocks 2..4 = ∂(hidden-side gate pre-activations) in (r, z, n) order.
_Z, _N_IN, _R, _ZG, _N_HID = range(5)


def _packed_chunks(step_rows: list[int]) -> list[tuple[int, int]]:
    """Steps grouped so that each group holds about ``ROWS_PER_CHUNK`` rows."""
    chunks, c0, rows = [], 0, 0
    for t, m in enumerate(step_rows):
        rows += m
        if rows >= ROWS_PER_CHUNK:
            chunks.append((c0, t + 1))
            c0, rows = t + 1, 0
    if c0 < len(step_rows):
        chunks.append((c0, len(step_rows)))
    return chunks


class _PackedRecurrence:
    """The forward walk over a packed batch: x [R, I], m_t rows per step → h [R, H].

    With ``fc_in = (w1, b1)`` the GRU reads relu(x w1ᵀ + b1) and with ``fc_out = (w2, b2)`` each
    chunk's outputs also go through q = h w2ᵀ + b2 (the RNN agent's layers around its GRU), one
    chunk at a time, so no network-sized intermediate ([R, H] per layer) is ever written.
    """

    def __init__(self, x, h0, step_rows, w_ih, w_hh, b_ih, b_hh, fc_in=None, fc_out=None, keep_h=True):
        # compute dtype: bfloat16 under autocast, else the weights' float32; with fc_in, x may be in a
        # storage dtype (uint8/float16 agent inputs), cast one chunk at a time
        cd = x.dtype if fc_in is None else h0.dtype
        self.x, self.step_rows, self.cd = x, step_rows, cd
        self.w_ih, self.w_hh = w_ih.to(cd).contiguous(), w_hh.to(cd).contiguous()
        self.b_ih, self.b_hh = b_ih.to(cd), b_hh.to(cd)
        self.fc_in = None if fc_in is None else (fc_in[0].to(cd).contiguous(), fc_in[1].to(cd))
        self.fc_out = None if fc_out is None else (fc_out[0].to(cd).contiguous(), fc_out[1].to(cd))
        self.offsets = [0]
        for m in step_rows:
            self.offsets.append(self.offsets[-1] + m)
        if self.offsets[-1] != x.shape[0]:
            raise ValueError(f"packed GRU: step rows sum to {self.offsets[-1]}, input has {x.shape[0]} rows")
        self.hd = hd = w_hh.shape[1]
        m0 = step_rows[0] if step_rows else 0
        self.h0 = h0.to(cd)  # [m_0, H]
        like = dict(dtype=cd, device=x.device)
        self.chunks = _packed_chunks(step_rows)
        # h of every row (the backward reads it), or with fc_out and keep_h=False one chunk's rows, reused
        # by every chunk (a step reads h_{t-1} before it writes h_t, and a chunk's first step reads the
        # previous chunk's last rows, at the buffer's end): no-grad target networks hold no [R, H] tensor
        self.keep_h = keep_h or fc_out is None
        most = max((self.offsets[c1] - self.offsets[c0] for c0, c1 in self.chunks), default=0)
        self.h = torch.empty(x.shape[0] if self.keep_h else most, hd, **like)  # [R, H] or [rows of a chunk, H]
        self.q = None if fc_out is None else torch.empty(x.shape[0], self.fc_out[0].shape[0], **like)  # [R, A]
        self.rz, self.n, self.diff = (torch.empty(m0, k * hd, **like) for k in (2, 1, 1))

    def gru_input(self, lo: int, hi: int) -> torch.Tensor:
        """The GRU's input on rows lo:hi ([rows, H_in]): x itself, or relu(fc_in(x))."""
        return self.x[lo:hi] if self.fc_in is None else _linear_relu(self.x[lo:hi].to(self.cd), *self.fc_in)

    def steps(self):
        """Runs the recurrence; yields (t, m_t, gh [m_t, 3H]) after each step (r, z in ``rz[:m]``, n in
        ``n[:m]``, h_{t-1} − n in ``diff[:m]``), so the caller can derive the backward factors."""
        hd, o = self.hd, self.offsets
        h_before = self.h0  # h_{t-1}: its first m_t rows are the step's previous states
        for c0, c1 in self.chunks:
            # where this chunk's outputs go: rows o[c0]:o[c1] of h, or the start of a chunk buffer
            h_out = self.h[o[c0] : o[c1]] if self.keep_h else self.h[: o[c1] - o[c0]]
            gi = _linear(self.gru_input(o[c0], o[c1]), self.w_ih, self.b_ih)  # [rows of the chunk, 3H]
            for t in range(c0, c1):
                m, h_prev = self.step_rows[t], h_before[: self.step_rows[t]]
                gh = _linear(h_prev, self.w_hh, self.b_hh)  # [m, 3H]
                gi_t, rz, n, diff = gi[o[t] - o[c0] : o[t] - o[c0] + m], self.rz[:m], self.n[:m], self.diff[:m]
                torch.add(gi_t[:, : 2 * hd], gh[:, : 2 * hd], out=rz)
                rz.sigmoid_()
                torch.addcmul(gi_t[:, 2 * hd :], rz[:, :hd], gh[:, 2 * hd :], out=n)
                n.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)  # tanh(a) = 2σ(2a) − 1
                torch.sub(h_prev, n, out=diff)
                h_before = h_out[o[t] - o[c0] : o[t] - o[c0] + m]
                torch.addcmul(n, rz[:, hd:], diff, out=h_before)  # (1 − z)·n + z·h_{t-1}
                yield t, m, gh
            if self.fc_out is not None:
                self.q[o[c0] : o[c1]] = _linear(h_out, *self.fc_out)

    def run(self) -> torch.Tensor:
        """The whole forward: h [R, H], or q [R, A] with ``fc_out``."""
        for _ in self.steps():
            pass
        return self.h if self.q is None else self.q


class _PackedGRU(torch.autograd.Function):
    """Autograd for a packed batch: (x [R, I], h0 [m_0, H], weights[, fc_in, fc_out]) → h [R, H] (or q).

    It keeps no per-step factors (5 H per row: 260 MB per network at predator-prey size): the
    backward recomputes them one chunk at a time from x and the saved outputs h, with two
    chunk-sized matmuls (x W_ihᵀ and h_{t-1} W_hhᵀ for all the chunk's rows at once) and a few
    elementwise ops (see the module docstring).
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, w1, b1, w2, b2, step_rows):
        fc_in = None if w1 is None else (w1, b1)
        fc_out = None if w2 is None else (w2, b2)
        rec = _PackedRecurrence(x, h0, step_rows, w_ih, w_hh, b_ih, b_hh, fc_in, fc_out)
        out = rec.run()
        w1c, b1c = rec.fc_in if fc_in is not None else (None, None)
        w2c, b2c = rec.fc_out if fc_out is not None else (None, None)
        ctx.save_for_backward(x, rec.h0, rec.w_ih, rec.w_hh, rec.b_ih, rec.b_hh, w1c, b1c, w2c, rec.h)
        ctx.step_rows, ctx.offsets, ctx.cd = step_rows, rec.offsets, rec.cd
        ctx.param_dtype = w_ih.dtype
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, h0, w_ih, w_hh, b_ih, b_hh, w1, b1, w2, h = ctx.saved_tensors
        step_rows, o = ctx.step_rows, ctx.offsets
        hd, cd, pd = w_hh.shape[1], ctx.cd, ctx.param_dtype
        need_x, need_h0, need_wih, need_whh, need_bih, need_bhh, need_w1, need_b1, need_w2, need_b2 = (
            ctx.needs_input_grad[:10]
        )
        has_in, has_out = w1 is not None, w2 is not None
        i_gru = w_ih.shape[1]  # the GRU's input width (fc_in's output width when fused)
        grad_out = grad_out.to(cd)
        w_hh_t = w_hh.t().contiguous()  # [H, 3H]
        w_ih_nrz_t = torch.cat([w_ih[2 * hd :], w_ih[: 2 * hd]]).t().contiguous()  # [I, 3H], rows n, r, z
        w1_t = w1.t().contiguous() if has_in and need_x else None  # [I, H_in]
        dx = torch.empty_like(x) if need_x else None  # [R, I]
        acc = dict(dtype=torch.promote_types(pd, torch.float32), device=x.device)  # sums at ≥ float32
        dw_ih_nrz, dw_hh = torch.zeros(3 * hd, i_gru, **acc), torch.zeros(3 * hd, hd, **acc)
        db_ih_nrz, db_hh = torch.zeros(3 * hd, **acc), torch.zeros(3 * hd, **acc)
        dw1 = torch.zeros(w1.shape, **acc) if has_in else None
        db1 = torch.zeros(w1.shape[0], **acc) if has_in else None
        dw2 = torch.zeros(w2.shape, **acc) if has_out else None
        db2 = torch.zeros(w2.shape[0], **acc) if has_out else None
        t_len = len(step_rows)
        like = dict(dtype=cd, device=x.device)
        dh_all = torch.empty(step_rows[0] if t_len else 0, hd, **like)  # ∂L/∂h_t in its first m_t rows
        chunks = _packed_chunks(step_rows)
        most = max((o[c1] - o[c0] for c0, c1 in chunks), default=0)
        f_buf = torch.empty(most, 5, hd, **like)  # one chunk's factors, then (in place) its ∂L/∂(pre-activations)
        h_prev = torch.empty(most, hd, **like)  # one chunk's h_{t-1} rows
        rz_buf, n_buf, tmp_buf = (torch.empty(most, k * hd, **like) for k in (2, 1, 1))
        gh_buf = torch.empty(most, hd, **like) if has_out else None  # one chunk's ∂L/∂h from the output layer
        one = torch.ones((), **like)
        back = None  # ∂L/∂h_t through step t+1 [m_{t+1}, H], carried down the steps
        for c0, c1 in reversed(chunks):
            lo_c, hi_c = o[c0], o[c1]
            rows = hi_c - lo_c
            if has_out:  # q = h w2ᵀ + b2 on the chunk's rows
                gq = grad_out[lo_c:hi_c]  # [rows, A]
                grad_h = torch.mm(gq, w2, out=gh_buf[:rows])  # [rows, H]
                if need_w2:
                    _mm_into(dw2, gq.t(), h[lo_c:hi_c])
                if need_b2:
                    db2 += gq.sum(0, dtype=db2.dtype)
            else:
                grad_h = grad_out[lo_c:hi_c]
            for t in range(c0, c1):
                m, lo = step_rows[t], o[t] - lo_c
                h_prev[lo : lo + m].copy_(h0[:m] if t == 0 else h[o[t - 1] : o[t - 1] + m])
            # the forward's gates of the whole chunk, recomputed (same equations as _PackedRecurrence)
            hp, f = h_prev[:rows], f_buf[:rows]
            xc = x[lo_c:hi_c].to(cd)  # [rows, I] (a cast of this chunk only where x is in a storage dtype)
            u = xc if not has_in else _linear_relu(xc, w1, b1)  # the GRU's input rows
            gi = _linear(u, w_ih, b_ih)  # [rows, 3H]
            gh = _linear(hp, w_hh, b_hh)  # [rows, 3H]
            rz, n, tmp = rz_buf[:rows], n_buf[:rows], tmp_buf[:rows]
            torch.add(gi[:, : 2 * hd], gh[:, : 2 * hd], out=rz)
            rz.sigmoid_()
            r, z = rz[:, :hd], rz[:, hd:]
            torch.addcmul(gi[:, 2 * hd :], r, gh[:, 2 * hd :], out=n)
            n.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)  # tanh(a) = 2σ(2a) − 1
            _gate_factors(f, r, z, n, gh[:, 2 * hd :], torch.sub(hp, n, out=tmp), one, tmp)
            del gi, gh
            for t in range(c1 - 1, c0 - 1, -1):
                m, lo = step_rows[t], o[t] - lo_c
                dh = dh_all[:m]  # total ∂L/∂h_t: its own gradient plus what step t+1 sends back
                dh.copy_(grad_h[lo : lo + m])
                if back is not None:
                    dh[: back.shape[0]] += back
                d = torch.mul(f[lo : lo + m], dh.unsqueeze(1), out=f[lo : lo + m])  # [m, 5, H]
                back = _linear_add(d[:, _R:].reshape(m, 3 * hd), d[:, _Z], w_hh_t)  # ∂L/∂h_{t-1} via step t
            flat = f.view(rows, 5 * hd)
            d_in, d_hid = flat[:, _N_IN * hd : (_ZG + 1) * hd], flat[:, _R * hd :]  # [rows, 3H] each
            if need_wih:
                _mm_into(dw_ih_nrz, d_in.t(), u)
            if need_whh:
                _mm_into(dw_hh, d_hid.t(), hp)
            if need_bih:
                db_ih_nrz += d_in.sum(0, dtype=db_ih_nrz.dtype)
            if need_bhh:
                db_hh += d_hid.sum(0, dtype=db_hh.dtype)
            if has_in and (need_x or need_w1 or need_b1):
                du = torch.ops.aten.threshold_backward(_linear(d_in, w_ih_nrz_t, None), u, 0)  # [rows, H_in]
                if need_w1:
                    _mm_into(dw1, du.t(), xc)
                if need_b1:
                    db1 += du.sum(0, dtype=db1.dtype)
                if need_x:
                    dx[lo_c:hi_c] = _linear(du, w1_t, None)
            elif need_x:
                dx[lo_c:hi_c] = _linear(d_in, w_ih_nrz_t, None)

        def to_rzn(v):  # rows (n, r, z) → PyTorch's (r, z, n)
            return torch.cat([v[hd:], v[:hd]]).to(pd)

        def out(g, need):
            return g.to(pd) if need and g is not None else None

        if need_h0:
            grad_h0 = torch.zeros(h0.shape, dtype=pd, device=x.device)
            if back is not None:
                grad_h0[: back.shape[0]] = back
        return (dx, grad_h0 if need_h0 else None, to_rzn(dw_ih_nrz) if need_wih else None,
                dw_hh.to(pd) if need_whh else None, to_rzn(db_ih_nrz) if need_bih else None,
                db_hh.to(pd) if need_bhh else None, out(dw1, need_w1), out(db1, need_b1),
                out(dw2, need_w2), out(db2, need_b2), None)  # fmt: skip


def packed_gru(x, h0, step_rows, w_ih, w_hh, b_ih, b_hh, fc_in=None, fc_out=None) -> torch.Tensor:
    """PyTorch's single-layer GRU over a packed batch: x [R, I], h0 [m_0, H], ``step_rows`` [T] ints
    (non-increasing, Σ = R) → h [R, H] (each step's output rows in x's order).

    ``fc_in = (w1, b1)``: the GRU reads relu(x w1ᵀ + b1), x in any dtype (e.g. uint8 storage: each
    chunk is cast to the compute dtype when read, so no float copy of x is made); ``fc_out = (w2, b2)``: returns
    q = h w2ᵀ + b2 [R, A] instead of h (both fused into the chunked walk, see ``_PackedGRU``).
    Under autocast the matmuls and gates run in its dtype (bfloat16) while the weight gradients are
    summed in float32 and returned in the weights' dtype.
    """
    dev = x.device.type
    if fc_in is None:
        x = x.to(compute_dtype(x))
    else:  # x may be in a storage dtype: the walk casts it a chunk at a time
        h0 = h0.to(torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else fc_in[0].dtype)
    w1, b1 = fc_in if fc_in is not None else (None, None)
    w2, b2 = fc_out if fc_out is not None else (None, None)
    params = [a for a in (x, h0, w_ih, w_hh, b_ih, b_hh, w1, b1, w2, b2) if a is not None]
    with torch.autocast(x.device.type, enabled=False):
        if torch.is_grad_enabled() and any(a.requires_grad for a in params):
            return _PackedGRU.apply(x, h0, w_ih, w_hh, b_ih, b_hh, w1, b1, w2, b2, list(step_rows))
        return _PackedRecurrence(x, h0, list(step_rows), w_ih, w_hh, b_ih, b_hh, fc_in, fc_out, keep_h=False).run()
