"""Atomic outputs: nothing a later stage reads is ever half-written.

Single files go through a temporary sibling and `os.replace`. A stage with several outputs
writes them into a staging folder inside its output folder, then moves each into place and
writes its manifest last (see `manifest.py`): the manifest is the completion marker, and it is
removed before a stage starts, so a crash between two renames leaves no manifest vouching for
a mixed set of files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from k12tune.fileio import ChunkedFile


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with ChunkedFile(tmp) as handle:
            handle.write(data)
            os.fsync(handle.fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staging_dir(out_dir: Path) -> Iterator[Path]:
    """A fresh `.staging-<pid>` folder inside `out_dir` (same file system, so renames are
    atomic), removed afterwards whether the stage succeeded or not."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, out_dir: Path, names: list[str]) -> None:
    """Move the staged files into `out_dir` (each rename is atomic)."""
    for name in names:
        os.replace(staging / name, out_dir / name)
