"""Deterministic train/val split and source weights, both from the record's digest.

The digest (SHA-256 of the dedup form) is uniform, so its bytes serve as fixed random numbers:
the same conversation always lands in the same split, whatever the file order or the seed, and
duplicates can never leak from train into val.
"""

from __future__ import annotations

import math

_SCALE = float(1 << 64)


def _unit(digest: bytes, start: int) -> float:
    return int.from_bytes(digest[start : start + 8], "big") / _SCALE


def is_val(digest: bytes, val_fraction: float) -> bool:
    """Bytes 0..7 of the digest as a number in [0, 1): val when it is below `val_fraction`."""
    return _unit(digest, 0) < val_fraction


def copies(digest: bytes, weight: float) -> int:
    """How many times a training record enters the training stream for a source `weight`:
    floor(weight), plus one more with probability frac(weight), decided by digest bytes 8..15.
    So weight 1 keeps every record once, 0.5 keeps a fixed half, 2.5 gives 2 or 3 copies."""
    whole = math.floor(weight)
    return whole + (1 if _unit(digest, 8) < weight - whole else 0)


def record_id(digest: bytes) -> str:
    """Stable id: the first 12 bytes of the digest in hex. Unique after dedup (96 bits)."""
    return digest[:12].hex()
