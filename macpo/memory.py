"""Keep freed memory in the process: no page-fault storm on every learner update (glibc only).

A learner update allocates and frees tensors of megabytes to tens of megabytes (chunk buffers,
activations, gradients). glibc's malloc serves the large ones with fresh ``mmap`` s and hands
freed heap tops back to the kernel, so each update touches its memory anew: ~60–100k page faults
per predator-prey QMIX update, measured 15–25% of its CPU time on this project's VMs. With
``mmap`` off for the heap and no trimming, freed blocks are reused by the next update; the
process keeps its peak (which ``ru_maxrss`` reports anyway). Elsewhere (macOS, musl) a no-op.

``no_huge_pages`` keeps a large, sparsely written tensor (the replay buffer) out of transparent
huge pages: where THP is ``always``, the first write into any 2 MiB of it would make all of it
resident, and a buffer that writes only each episode's real rows would be resident in full.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

import torch

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_MADV_NOHUGEPAGE = 15  # madvise advice (linux/mman.h)
_done = False


@functools.cache
def _libc():
    """glibc (or the platform's C library) through ctypes; None where there is none to load."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed memory instead of returning it; True where it applied."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # trim threshold: the largest int (2 GiB of free heap top before any is given back)
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _done


def no_huge_pages(tensor: torch.Tensor) -> bool:
    """Advise the kernel never to back ``tensor``'s whole pages with transparent huge pages (Linux,
    CPU tensors); True where the advice applied. Pages stay untouched until written, as before."""
    madvise = getattr(_libc(), "madvise", None)
    if tensor.device.type != "cpu" or not sys.platform.startswith("linux") or madvise is None:
        return False
    page = os.sysconf("SC_PAGE_SIZE")
    start = -(-tensor.data_ptr() // page) * page  # first whole page
    end = (tensor.data_ptr() + tensor.untyped_storage().nbytes()) // page * page
    if end <= start:
        return False
    madvise.argtypes, madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return madvise(start, end - start, _MADV_NOHUGEPAGE) == 0
