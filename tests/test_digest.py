"""File digests: BLAKE3 by default (the published test vectors), SHA-256 on request, and a file
read in blocks gives the digest of its whole bytes."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from k12tune.digest import ALGORITHM, bytes_digest, file_digest, hasher, known

# From the BLAKE3 reference implementation's test vectors (input "" and "abc").
BLAKE3_EMPTY = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
BLAKE3_ABC = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"


def test_blake3_is_the_default_and_matches_its_test_vectors() -> None:
    assert ALGORITHM == "blake3"
    assert bytes_digest(b"") == BLAKE3_EMPTY
    assert bytes_digest(b"abc") == BLAKE3_ABC
    assert bytes_digest(b"abc", "sha256") == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_a_file_read_in_blocks_has_the_digest_of_its_bytes(tmp_path: Path, algorithm: str) -> None:
    data = random.Random(0).randbytes((9 << 20) + 5)  # three 4 MiB blocks, the last one short
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f", algorithm) == bytes_digest(data, algorithm)
    h = hasher(algorithm)
    h.update(data[:7])
    h.update(data[7:])
    assert h.hexdigest() == bytes_digest(data, algorithm)


def test_only_the_two_algorithms_are_known() -> None:
    assert known("blake3") and known("sha256")
    assert not known("md5") and not known(None)
