"""The hand-written CPU kernels, behind one switch: ``nn.kernels: fused | torch``.

Everything in this package is a speed-up of a computation the network modules can also run with
plain PyTorch layers and autograd, with the same parameters and the same results up to float
rounding:

- ``matmul``: float32/bfloat16 matmuls through oneDNN (``torch.ops.mkldnn``: AVX-512 where MKL's
  sgemm stays on AVX2), and ``data_linear``, a layer that reads replay data in its storage dtype;
- ``gru``: the GRU walk over a packed batch with a hand-written, recomputing backward (the agent's
  input and output layers fused in), which every learner update runs;
- ``mixers``: QMIX's monotonic mixing layer and the central Q*'s MLP, a chunk of rows at a time.

``fused`` (the default) runs them where they apply (CPU tensors); ``torch`` makes every network
module (``macpo.nn.fused_gru.FusedGRU``, ``macpo.nn.agent.RNNAgent``, ``QMixer``, ``CentralMixer``)
take its plain path: ``nn.GRU``, ``nn.Linear``/``F.linear`` and autograd. Use it to check a result
or to debug: a run with ``nn.kernels=torch`` trains the same networks on the same data.

The switch is process-wide state read at every forward, set once per run by the run lifecycle
(``use``) from the config; ``using`` scopes it (tests, benchmarks). A run is one process, so one
run never sees two settings; a module built under one setting runs under the other.

``cap_kernel_caches`` bounds oneDNN's and ideep's per-shape kernel caches; a run calls it when it
starts (before its first matmul), as does ``macpo.tools.bench``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

MODES = ("fused", "torch")
_mode = "fused"


def use(mode: str) -> None:
    """Set the kernels every network runs with from now on: ``fused`` or ``torch``."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"nn.kernels must be one of {MODES}, got {mode!r}")
    _mode = mode


def mode() -> str:
    """The kernels in use: ``fused`` or ``torch``."""
    return _mode


def enabled() -> bool:
    """Whether the hand-written kernels run (where they apply); False: plain PyTorch layers everywhere."""
    return _mode == "fused"


@contextmanager
def using(mode: str) -> Iterator[None]:
    """``use(mode)`` inside the block, the previous setting after it."""
    previous = _mode
    use(mode)
    try:
        yield
    finally:
        use(previous)


# oneDNN and PyTorch's ideep layer over it each cache one compiled kernel per matmul shape, 1024
# apiece by default at ~0.2 MB per shape. Packed SMAC batches change their row counts every update,
# so a run's memory grew by ~450 MB until the caches filled (MMM2 QMIX updates, 120 of them). An
# MMM2 update meets ~10 new shapes and ~400 calls; with 128 entries it ran as fast (0.32–0.37 s,
# as with 256 or 1024) and the process stayed ~450 MB smaller (64 entries: ~5% slower).
KERNEL_CACHE_CAPACITY = 128
KERNEL_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def cap_kernel_caches(capacity: int = KERNEL_CACHE_CAPACITY) -> None:
    """Cap oneDNN's and ideep's per-shape kernel caches at ``capacity`` entries, unless the user has set them.

    The libraries read these environment variables at their first use, so this must run before the
    process's first oneDNN matmul: a run calls it as it starts (``macpo.runs.lifecycle.build_run``).
    """
    for name in KERNEL_CACHE_VARIABLES:
        os.environ.setdefault(name, str(capacity))
