"""The training file's copy out of the spill files: exact bytes, windows at their offsets,
a clear error for a spill file that is cut short, one writer at a time."""

from __future__ import annotations

import fcntl
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from k12tune.data.linecopy import LineWindow, copy_window


def spill_files(
    folder: Path, n_files: int = 3, n_lines: int = 200
) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Spill files of random lines; returns their paths and every line as (file, offset, size)."""
    rng = random.Random(0)
    paths, lines = [], []
    for f in range(n_files):
        offset, blob = 0, bytearray()
        for _ in range(n_lines):
            line = rng.randbytes(rng.randrange(1, 300)) + b"\n"
            lines.append((f, offset, len(line)))
            blob += line
            offset += len(line)
        path = folder / f".lines-{f}"
        path.write_bytes(bytes(blob))
        paths.append(str(path))
    return paths, lines


def test_windows_copy_lines_in_order_to_their_offsets(tmp_path: Path) -> None:
    paths, lines = spill_files(tmp_path)
    order = list(range(len(lines)))
    random.Random(1).shuffle(order)
    blobs = [Path(p).read_bytes() for p in paths]
    expected = b"".join(blobs[f][o : o + s] for f, o, s in (lines[i] for i in order))
    out = tmp_path / "train.jsonl"
    out.touch()
    picked = np.array([lines[i] for i in order], dtype=np.int64)
    ends = np.cumsum(picked[:, 2])
    written = 0
    for start in reversed(range(0, len(order), 97)):  # any order: each window has its place
        window = picked[start : start + 97]
        task = LineWindow(
            paths,
            window[:, 0].astype(np.int16),
            window[:, 1],
            window[:, 2],
            str(out),
            int(ends[start] - window[0, 2]),
        )
        written += copy_window(task)
    assert written == len(expected)
    assert out.read_bytes() == expected


def test_a_short_spill_file_is_an_error_naming_it(tmp_path: Path) -> None:
    paths, lines = spill_files(tmp_path, n_files=1, n_lines=5)
    _, offset, size = lines[-1]
    out = tmp_path / "train.jsonl"
    out.touch()
    task = LineWindow(
        paths,
        np.zeros(2, dtype=np.int16),
        np.array([0, offset + 1], dtype=np.int64),
        np.array([3, size], dtype=np.int64),  # the second line runs past the end of the file
        str(out),
        0,
    )
    with pytest.raises(OSError, match=rf"\.lines-0: could not read {size} bytes at offset {offset + 1}"):
        copy_window(task)


def test_a_window_waits_for_the_lock_of_another_writer(tmp_path: Path) -> None:
    """Windows are written under an exclusive `flock` of the output: two processes writing
    the same file at once would otherwise spin on its inode lock in the kernel."""
    paths, lines = spill_files(tmp_path, n_files=1, n_lines=5)
    out = tmp_path / "train.jsonl"
    out.touch()
    picked = np.array(lines, dtype=np.int64)
    task = LineWindow(paths, picked[:, 0].astype(np.int16), picked[:, 1], picked[:, 2], str(out), 0)
    with open(out, "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with ThreadPoolExecutor(1) as pool:
            copying = pool.submit(copy_window, task)
            time.sleep(0.3)
            assert not copying.done()
            assert out.stat().st_size == 0
            fcntl.flock(holder, fcntl.LOCK_UN)
            assert copying.result(timeout=10) == int(picked[:, 2].sum())
    assert out.read_bytes() == Path(paths[0]).read_bytes()
