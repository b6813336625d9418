import hashlib
import logging
import random

import numpy as np
import pytest

from k12tune.data import sha256


def random_slices(rng: random.Random, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A buffer and n slices of it: empty ones, ones across SHA-256's 64-byte blocks and its
    55/56-byte padding edge, long ones, overlapping ones, out of order."""
    data = np.frombuffer(rng.randbytes(300_000), dtype=np.uint8)
    sizes = [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 4096, 100_000] + [
        rng.randrange(0, 3000) for _ in range(n)
    ]
    starts = np.array([rng.randrange(0, len(data) - size + 1) for size in sizes], dtype=np.int64)
    return data, starts, starts + np.array(sizes, dtype=np.int64)


def by_hashlib(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[bytes]:
    return [hashlib.sha256(data[a:b].tobytes()).digest() for a, b in zip(starts, ends, strict=True)]


def test_openssl_is_found_here() -> None:
    """On Linux with a CPython whose hashlib links a shared OpenSSL (this machine and CI), the
    fast path is taken; elsewhere this is the test to read first."""
    assert sha256.openssl_functions() is not None


@pytest.mark.parametrize("fast", [True, False])
def test_digests_equal_hashlib_on_every_slice(fast: bool, monkeypatch) -> None:
    if not fast:
        monkeypatch.setattr(sha256, "openssl_functions", lambda: None)
    data, starts, ends = random_slices(random.Random(7), 500)
    got = sha256.sha256_slices(data, starts, ends)
    assert got.shape == (len(starts), 32) and got.dtype == np.uint8 and got.flags.writeable
    assert [row.tobytes() for row in got] == by_hashlib(data, starts, ends)


@pytest.mark.parametrize("fast", [True, False])
def test_no_slices_give_no_digests(fast: bool, monkeypatch) -> None:
    if not fast:
        monkeypatch.setattr(sha256, "openssl_functions", lambda: None)
    empty = np.zeros(0, dtype=np.int64)
    assert sha256.sha256_slices(np.zeros(0, dtype=np.uint8), empty, empty).shape == (0, 32)


def test_functions_that_disagree_with_hashlib_are_not_used(monkeypatch, caplog) -> None:
    """The check before use: OpenSSL's SHA-224 functions have the same signatures, but their
    digests differ from hashlib's SHA-256, so they must be refused (and hashlib used)."""
    monkeypatch.setattr(sha256, "_FUNCTIONS", ("SHA224_Init", "SHA224_Update", "SHA224_Final"))
    sha256.openssl_functions.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="k12tune.data.sha256"):
            assert sha256.openssl_functions() is None
        assert "disagree with hashlib" in caplog.text
        data, starts, ends = random_slices(random.Random(8), 20)
        assert [row.tobytes() for row in sha256.sha256_slices(data, starts, ends)] == by_hashlib(
            data, starts, ends
        )
    finally:
        sha256.openssl_functions.cache_clear()


def test_without_a_shared_openssl_hashlib_hashes(monkeypatch) -> None:
    monkeypatch.setattr(sha256, "_hashlib_openssl", lambda: None)
    sha256.openssl_functions.cache_clear()
    try:
        assert sha256.openssl_functions() is None
    finally:
        sha256.openssl_functions.cache_clear()
