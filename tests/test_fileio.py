"""Large writes go out in 64 KiB pieces, whole, at the file position or at an offset."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import blake3
import pytest

from k12tune import fileio
from k12tune.fileio import WRITE_CHUNK, ChunkedFile, write_all


def test_write_all_writes_everything_in_pieces_of_at_most_64_kib(tmp_path: Path, monkeypatch) -> None:
    data = random.Random(0).randbytes(5 * WRITE_CHUNK + 123)
    sizes = []
    real_write = os.write

    def spy(fd: int, piece: memoryview) -> int:
        sizes.append(len(piece))
        return real_write(fd, piece)

    monkeypatch.setattr(fileio.os, "write", spy)
    with ChunkedFile(tmp_path / "out") as out:
        out.write(b"head")
        out.write(data)
    assert (tmp_path / "out").read_bytes() == b"head" + data
    assert sizes == [4, *[WRITE_CHUNK] * 5, 123]


def test_write_all_finishes_short_writes(tmp_path: Path, monkeypatch) -> None:
    """A write may take fewer bytes than offered: the rest follows, nothing is lost."""
    real_write = os.write
    monkeypatch.setattr(fileio.os, "write", lambda fd, piece: real_write(fd, piece[:1000]))
    data = bytes(range(256)) * 40
    with ChunkedFile(tmp_path / "out") as out:
        out.write(data)
    assert (tmp_path / "out").read_bytes() == data


def test_write_all_at_an_offset_fills_its_place(tmp_path: Path) -> None:
    """Windows written at their offsets, in any order, make up the whole file."""
    data = random.Random(1).randbytes(3 * WRITE_CHUNK + 7)
    cuts = [0, 5, WRITE_CHUNK + 3, 2 * WRITE_CHUNK + 11, len(data)]
    path = tmp_path / "out"
    path.touch()
    fd = os.open(path, os.O_WRONLY)
    try:
        for a, b in reversed(list(itertools.pairwise(cuts))):
            write_all(fd, memoryview(data)[a:b], a)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # pwrite leaves the file position alone
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_chunked_file_truncates(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"old contents that are longer")
    with ChunkedFile(path) as out:
        out.write(b"new")
    assert path.read_bytes() == b"new"


def test_a_digest_file_knows_the_blake3_of_what_it_wrote(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(3 * WRITE_CHUNK + 7)
    with ChunkedFile(tmp_path / "out", digest=True) as out:
        assert out.hexdigest() == blake3.blake3(b"").hexdigest()
        out.write(data[:100])
        out.write(memoryview(data)[100:])
        assert out.hexdigest() == blake3.blake3((tmp_path / "out").read_bytes()).hexdigest()
    with ChunkedFile(tmp_path / "plain") as plain, pytest.raises(ValueError, match="digest=True"):
        plain.hexdigest()
