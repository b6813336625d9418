"""Deterministic train/val split and source weights, both from the record's digest.

The digest (SHA-256 of the dedup form) is uniform, so its bytes serve as fixed random numbers:
the same conversation always lands in the same split, whatever the file order or the seed, and
duplicates can never leak from train into val.
"""

from __future__ import annotations

import math

import numpy as np

_SCALE = float(1 << 64)
ID_BYTES = 12  # digest bytes in a record id (`record_id`): 96 bits, 24 hex digits


def _units(digests: bytes, start: int) -> np.ndarray:
    """For each 32-byte digest in `digests`: bytes start..start+7, big-endian, as a number in
    [0, 1) (the same double as `int.from_bytes(...) / 2**64`: both round the integer to the
    nearest double, and the division by a power of two is exact)."""
    words = np.frombuffer(digests, dtype=">u8").reshape(-1, 4)[:, start // 8]
    return words.astype(np.float64) / _SCALE


def is_val(digests: bytes, val_fraction: float) -> np.ndarray:
    """Per digest: bytes 0..7 as a number in [0, 1); val when it is below `val_fraction`."""
    return _units(digests, 0) < val_fraction


def copies(digests: bytes, weight: float) -> np.ndarray:
    """Per digest, how many times a training record enters the training stream for a source
    `weight`: floor(weight), plus one more with probability frac(weight), decided by digest
    bytes 8..15. So weight 1 keeps every record once, 0.5 keeps a fixed half, 2.5 gives 2 or 3
    copies."""
    whole = math.floor(weight)
    return whole + (_units(digests, 8) < weight - whole).astype(np.int64)


def record_id(digest: bytes) -> str:
    """Stable id: the first `ID_BYTES` bytes of the digest in hex. Unique after dedup (96 bits)."""
    return digest[:ID_BYTES].hex()
