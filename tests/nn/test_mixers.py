"""The mixers' chunked layers (macpo.nn.qmix_mixer, macpo.nn.central_q, macpo.nn.kernels.matmul.data_linear)
compute what their written-out layers compute, forward and every gradient, with less memory."""

import pytest
import torch

from macpo.nn.central_q import CentralMixer
from macpo.nn.kernels import matmul as fast_linear


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_qmix_monotonic_mix_equals_the_written_out_layer(dtype):
    """QMIX's first mixing layer (kept as w alone, by chunks) = (q·|w|).sum + b, values and gradients."""
    from macpo.nn.kernels.mixers import _MonotonicMix

    g = torch.Generator().manual_seed(0)
    m = 3 * fast_linear.ROWS_PER_CHUNK + 5  # several chunks and a ragged last one
    q = torch.randn(m, 4, generator=g).requires_grad_()
    w = torch.randn(m, 4, 6, generator=g).to(dtype)
    w[0, 0, 0] = 0.0  # |·|'s gradient at 0
    w.requires_grad_()
    b = torch.randn(m, 6, generator=g).to(dtype).requires_grad_()
    ref = (q[..., None] * w.abs()).sum(1) + b
    got = _MonotonicMix.apply(q, w, b)
    assert got.dtype == ref.dtype and torch.equal(got, ref)
    up = torch.randn(ref.shape, generator=g)
    for a, c in zip(torch.autograd.grad((got * up).sum(), [q, w, b]), torch.autograd.grad((ref * up).sum(), [q, w, b])):
        assert a.dtype == c.dtype and torch.equal(a, c)


@pytest.mark.parametrize("storage", [torch.uint8, torch.float16])
def test_data_linear_reads_storage_dtypes_as_their_float_copy(storage):
    """The mixers' state layer on uint8/float16 data = ``linear`` on a float32 copy (forward, gradients;
    several chunks), and under bf16 autocast = F.linear's autocast result."""
    g = torch.Generator().manual_seed(0)
    rows = 2 * fast_linear.ROWS_PER_CHUNK + 7
    x = (torch.rand(rows, 30, generator=g) < 0.3).to(storage)
    if storage == torch.float16:
        x = x * torch.randn(rows, 30, generator=g).to(storage)
    w = torch.randn(16, 30, generator=g).requires_grad_()
    b = torch.randn(16, generator=g).requires_grad_()
    got, ref = fast_linear.data_linear(x, w, b), fast_linear.linear(x.float(), w, b)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-5)
    up = torch.randn(ref.shape, generator=g)
    for a, c in zip(torch.autograd.grad((got * up).sum(), [w, b]), torch.autograd.grad((ref * up).sum(), [w, b])):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, ref = fast_linear.data_linear(x, w, b), torch.nn.functional.linear(x.float(), w, b)
    assert got.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), ref.float(), rtol=1e-2, atol=1e-2)


def written_out(mix: CentralMixer, qs: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    n, first = qs.shape[-1], mix.net[0]
    w_s = torch.cat([first.weight[:, n:], mix.value[0].weight])
    b_s = torch.cat([first.bias, mix.value[0].bias])
    return mix._rows(qs, s.to(w_s.dtype), w_s, b_s)


@pytest.mark.parametrize("storage", [torch.uint8, torch.float64])
def test_central_mixer_equals_its_written_out_layers(storage, monkeypatch):
    """float64, several chunks and a ragged last one: Q* and the gradients of the utilities and of every
    weight equal autograd's through the layers as written (to float64 rounding)."""
    monkeypatch.setattr(fast_linear, "ROWS_PER_CHUNK", 64)
    g = torch.Generator().manual_seed(0)
    mix = CentralMixer(4, 12, 16).double()
    m = 3 * 64 + 17
    qs = torch.randn(m, 4, generator=g, dtype=torch.float64).requires_grad_()
    s = (torch.rand(m, 12, generator=g) < 0.3).to(storage)
    got, ref = mix(qs, s), written_out(mix, qs, s)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    up = torch.randn(m, generator=g, dtype=torch.float64)
    params = [qs, *mix.parameters()]
    for a, b in zip(torch.autograd.grad((got * up).sum(), params), torch.autograd.grad((ref * up).sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    with torch.no_grad():  # the target network's path: one chunk's buffers, the same values
        assert torch.equal(mix(qs, s), got.detach())


def test_central_mixer_under_bf16_autocast():
    """bf16 autocast: a bfloat16 Q* and float32 gradients as accurate (against float64) as autograd's
    through the written-out layers under the same autocast."""
    # bf16 rounding flips a few ReLU masks, so how close either path gets depends on the weights:
    # they come from a fixed seed, not from whatever tests ran before in the process (of 40 seeds,
    # one had this input gradient at 2.5× autograd's error; with seed 0 every error is under half its bound)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    mix = CentralMixer(4, 12, 16)
    qs = torch.randn(300, 4, generator=g).requires_grad_()
    s = (torch.rand(300, 12, generator=g) < 0.3).to(torch.uint8)
    params = [qs, *mix.parameters()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, ref = mix(qs, s), written_out(mix, qs, s)
    assert got.dtype == ref.dtype == torch.bfloat16
    got_grads = torch.autograd.grad(got.float().sum(), params)
    ref_grads = torch.autograd.grad(ref.float().sum(), params)
    mix64 = CentralMixer(4, 12, 16).double()
    mix64.load_state_dict(mix.state_dict())
    qs64 = qs.detach().double().requires_grad_()
    exact = written_out(mix64, qs64, s)
    exact_grads = torch.autograd.grad(exact.sum(), [qs64, *mix64.parameters()])

    def err(a, b):
        return ((a.double() - b).norm() / b.norm()).item()

    assert err(got, exact) <= max(2 * err(ref, exact), 1e-2)
    for a, b, x in zip(got_grads, ref_grads, exact_grads):
        assert a.dtype == torch.float32
        assert err(a, x) <= max(2 * err(b, x), 2e-2)


def test_onednn_kernel_caches_are_bounded():
    """Matmuls of ever new row counts (packed SMAC batches) do not grow the process without bound:
    ``cap_kernel_caches`` (called as a run starts) caps oneDNN's and ideep's per-shape kernel caches
    (~0.2 MB a shape otherwise)."""
    code = """
import ctypes, torch
import macpo.nn.kernels.matmul as fg
from macpo.nn.kernels import cap_kernel_caches
cap_kernel_caches()
if not fg.USE_ONEDNN:
    print("skip"); raise SystemExit
libc = ctypes.CDLL("libc.so.6")
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
torch.set_num_threads(1)
w, b, x = torch.randn(192, 64), torch.randn(192), torch.randn(2000, 64)
fg._linear(x[:600], w, b)
libc.malloc_trim(0)
r0 = rss()
for m in range(300, 1700):  # 1400 shapes
    fg._linear(x[:m], w, b)
libc.malloc_trim(0)
print(rss() - r0)
"""
    import os
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc and glibc's malloc_trim")
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    if out.strip() == "skip":
        pytest.skip("this PyTorch build has no oneDNN")
    growth = float(out.strip().splitlines()[-1])
    # capped (128 entries each): ~55 MiB; at the libraries' default 1024: ~440 MiB (measured)
    assert growth < 200, f"1400 matmul shapes grew the process by {growth:.0f} MiB"
