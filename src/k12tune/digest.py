"""File digests, as manifests record them: BLAKE3, and SHA-256 for manifests written before.

Every stage hashes what it reads and writes so that the next one can trust it (the data stage
alone hashes about 2.3 GB per million records). BLAKE3 is a cryptographic hash, like SHA-256,
and on one core of the 2-core CI VM it hashes at 0.13 ns per byte against SHA-256's 0.48 even
with the CPU's SHA extensions (`hashlib` on 256 MiB in memory): the data stage's 1M-record
benchmark ran 0.45 s faster with it. A manifest names its algorithm (`"digest": "blake3"`); one
without that key is from an earlier version and holds SHA-256 digests, which are checked as such.

To check a digest by hand: `b3sum FILE` (the BLAKE3 team's tool), or
`python -c "import blake3, sys; print(blake3.blake3(open(sys.argv[1], 'rb').read()).hexdigest())" FILE`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import blake3


class Hasher(Protocol):
    def update(self, data: Any, /) -> Any: ...

    def hexdigest(self) -> str: ...


ALGORITHM = "blake3"
LEGACY = "sha256"  # what a manifest without a "digest" key holds
_HASHERS: dict[str, Callable[[], Hasher]] = {"blake3": blake3.blake3, "sha256": hashlib.sha256}
LABELS: dict[str, str] = {"blake3": "BLAKE3", "sha256": "SHA-256"}
_BLOCK = 1 << 22


def hasher(algorithm: str = ALGORITHM) -> Hasher:
    """A new hasher; `update` it with bytes, then take `hexdigest()`."""
    return _HASHERS[algorithm]()


def known(algorithm: object) -> bool:
    return algorithm in _HASHERS


def bytes_digest(data: bytes, algorithm: str = ALGORITHM) -> str:
    h = hasher(algorithm)
    h.update(data)
    return h.hexdigest()


def file_digest(path: str | Path, algorithm: str = ALGORITHM) -> str:
    """The hex digest of a file's bytes, read in 4 MiB blocks (memory stays flat for any size)."""
    h = hasher(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            h.update(block)
    return h.hexdigest()
