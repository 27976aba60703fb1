"""Keep freed memory in the process: no page-fault storm on every learner update (glibc only).

A learner update allocates and frees tensors of megabytes to tens of megabytes (chunk buffers,
activations, gradients). glibc's malloc serves the large ones with fresh ``mmap`` s and hands
freed heap tops back to the kernel, so each update touches its memory anew: ~60–100k page faults
per predator-prey QMIX update, measured 15–25% of its CPU time on this project's VMs. With
``mmap`` off for the heap and no trimming, freed blocks are reused by the next update; the
process keeps its peak (which ``ru_maxrss`` reports anyway). Elsewhere (macOS, musl) a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_done = False


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed memory instead of returning it; True where it applied."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # trim threshold: the largest int (2 GiB of free heap top before any is given back)
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
