"""Copying the training file out of the spill files, one window of lines per task.

The sampler's order visits the spilled lines at random, so each line is its own read. A task
reads a window of consecutive output lines with one compiled loop of `pread`s
(`kernels.gather_lines`) into a buffer that its process keeps, and writes the window at its
place in the output (the sum of the sizes of the lines before it), so that the worker
processes copy windows side by side. Measured on 655,000 lines (0.7 GB): 0.85 s in two
processes, against 2.0 s for the same reads from Python in two threads.

The writes take turns (an exclusive `flock` of the output while a window is written): a file
takes one buffered writer at a time anyway (its inode lock), and a process that waits for that
lock in the kernel spins on it, which perf showed as 5% of each worker's time; one that waits
for the flock sleeps, and the other process's reads go on meanwhile.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass

import numpy as np

from k12tune.fileio import write_all

_buffer = np.zeros(0, dtype=np.uint8)  # this process's copy buffer, kept between tasks


@dataclass(slots=True)
class LineWindow:
    """Lines `sizes[i]` bytes long at `offsets[i]` of `paths[file_nos[i]]`, to be written one
    after another at `out_offset` of `out_path` (which must exist)."""

    paths: list[str]
    file_nos: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    out_path: str
    out_offset: int


def copy_window(window: LineWindow) -> int:
    """Copy `window`; returns the number of bytes written."""
    from k12tune.data import kernels

    global _buffer
    total = int(window.sizes.sum())
    if len(_buffer) < total:
        _buffer = np.empty(total, dtype=np.uint8)
    fds = np.array([os.open(path, os.O_RDONLY) for path in window.paths], dtype=np.int64)
    try:
        got = kernels.gather_lines(fds, window.file_nos, window.offsets, window.sizes, _buffer)
    finally:
        for fd in fds.tolist():
            os.close(fd)
    if got < 0:
        i = -1 - got
        path, offset, size = window.paths[window.file_nos[i]], window.offsets[i], window.sizes[i]
        raise OSError(f"{path}: could not read {size} bytes at offset {offset} (spill file cut short?)")
    out = os.open(window.out_path, os.O_WRONLY)
    try:
        fcntl.flock(out, fcntl.LOCK_EX)  # released by the close
        write_all(out, memoryview(_buffer)[:total], window.out_offset)
    finally:
        os.close(out)
    return total
