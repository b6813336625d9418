"""SHA-256 of many slices of one buffer: the dedup keys of a batch.

`hashlib` costs about 0.33 us per call on top of the hashing itself (a hash object made,
finalised, its digest returned as bytes), as much as hashing 700 bytes; the data stage hashes
one dedup key of about 1.2 KiB per record. `kernels.sha256_slices` calls the same OpenSSL
functions from one compiled loop instead: 595 against 880 ns per record of 1.25 KiB.

The OpenSSL is the one `hashlib` itself uses (found among the files this process has mapped),
so both give the same digests by construction; the functions are checked against `hashlib`
on a known text before use all the same. Where they cannot be found (no /proc, a Python whose
`hashlib` does not link a shared OpenSSL, an OpenSSL built without its low-level API), each
slice goes through `hashlib`: same digests, slower.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DIGEST_SIZE = 32
_FUNCTIONS = ("SHA256_Init", "SHA256_Update", "SHA256_Final")
_CHECK = b"k12tune: OpenSSL against hashlib"


def _hashlib_openssl() -> ctypes.CDLL | None:
    """The OpenSSL library loaded by `hashlib`'s `_hashlib` module, or None."""
    try:
        import _hashlib
    except ImportError:
        return None
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    for line in maps:
        path = line.split()[-1]
        if Path(path).name.startswith("libcrypto") or path == _hashlib.__file__:
            try:
                library = ctypes.CDLL(path)
            except OSError:
                continue
            if all(hasattr(library, name) for name in _FUNCTIONS):
                return library
    return None


@functools.cache
def openssl_functions() -> np.ndarray | None:
    """The addresses of `SHA256_Init`, `SHA256_Update` and `SHA256_Final` as int64, for
    `kernels.sha256_slices`, or None where they cannot be found or disagree with `hashlib`."""
    from k12tune.data import kernels

    library = _hashlib_openssl()
    if library is None:
        log.debug("no shared OpenSSL with the SHA-256 functions: dedup keys are hashed by hashlib")
        return None
    functions = np.array(
        [ctypes.cast(getattr(library, name), ctypes.c_void_p).value for name in _FUNCTIONS], dtype=np.int64
    )
    data = np.frombuffer(_CHECK, dtype=np.uint8)
    got = kernels.sha256_slices(functions, data, np.array([0]), np.array([len(data)]))
    if got.tobytes() != hashlib.sha256(_CHECK).digest():
        log.warning("k12tune: OpenSSL's SHA256 functions disagree with hashlib; hashing by hashlib")
        return None
    return functions


def sha256_slices(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The SHA-256 digest of each `data[starts[j]:ends[j]]` (`data` uint8, bounds int64), as
    a writable (n, 32) uint8 array."""
    functions = openssl_functions()
    if functions is None:
        view = memoryview(data)
        digests = b"".join(
            [hashlib.sha256(view[a:b]).digest() for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        )
        return np.frombuffer(digests, dtype=np.uint8).reshape(-1, DIGEST_SIZE).copy()
    from k12tune.data import kernels

    digests = kernels.sha256_slices(functions, data, starts, ends)
    if len(digests) != DIGEST_SIZE * len(starts):
        raise RuntimeError("OpenSSL's SHA256 functions reported a failure")
    return digests.reshape(-1, DIGEST_SIZE)
