"""Where a run's numbers came from: the code's commit, the machine, and the CPU time it cost.

Results pages compare runs made on different days and machines; these tags let them say which
commit and CPU produced a number (the CPU changes between machines, and bf16 is only fast where
the CPU has ``avx512_bf16``) and what a grid cost in CPU-seconds.
"""

from __future__ import annotations

import subprocess
import time
from functools import lru_cache
from pathlib import Path

#: metric holding the CPU-seconds a run has used, summed over its resumed segments
CPU_SECONDS_METRIC = "perf/cpu_seconds"


@lru_cache(maxsize=1)
def code_commit() -> str:
    """The git commit of the macpo checkout (``-dirty`` when it has uncommitted changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"  # an installed copy, not a checkout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@lru_cache(maxsize=1)
def machine() -> dict[str, str]:
    """The CPU's model name, core count and whether it computes bf16 natively."""
    import os

    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "machine.cpu": model,
        "machine.cores": str(os.cpu_count() or 0),
        "machine.avx512_bf16": str("avx512_bf16" in flags).lower(),
    }


def provenance_tags() -> dict[str, str]:
    return {"code.commit": code_commit(), **machine()}


class CpuClock:
    """CPU-seconds of this process since ``start``, added to what earlier segments of the run used."""

    def __init__(self, before: float = 0.0):
        self.before = float(before)
        self.t0 = time.process_time()

    def total(self) -> float:
        return self.before + time.process_time() - self.t0
