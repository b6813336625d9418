"""Keeping freed memory in a worker process instead of handing it back after every task.

A data-stage worker allocates and frees arrays of tens of MiB per batch. glibc serves large
blocks with mmap and trims the top of its heap whenever more than twice the mmap threshold is
free, so each batch faulted its memory in again: on the 2-core CI VM the two workers spent
2.7 s of system time each on a 1M-record run, 0.9 s with the thresholds below (whole stage:
11.0 s -> 8.9 s; `bench/bench_prepare.py`). The cost is that a worker keeps up to
`trim_threshold` of freed memory until it exits.
"""

from __future__ import annotations

import ctypes

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Serve blocks below `mmap_threshold` (glibc's largest allowed: 32 MiB) from the heap and
    trim the heap only when more than `trim_threshold` is free. Returns whether the C library
    took both settings (False off glibc, where nothing changes)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
