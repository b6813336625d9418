"""Exact deduplication across all sources of a stage: first occurrence wins.

The key is SHA-256 over the record's dedup form (roles and NFKC, white-space-collapsed texts;
see `normalize.dedup_form`), so memory grows by one 32-byte digest per kept record, never by
the texts themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from k12tune.data.normalize import SEPARATORS, dedup_forms
from k12tune.records import Message, PrefRecord, SFTRecord

_TURN, _FIELD = SEPARATORS


def _serialise(messages: list[Message]) -> str:
    return _TURN.join(f"{m['role']}{_FIELD}{m['content']}" for m in messages)


def _raw_parts(record: SFTRecord | PrefRecord) -> list[str]:
    if isinstance(record, SFTRecord):
        return [_serialise(record.messages)]
    return [_serialise(record.prompt), _serialise(record.chosen), _serialise(record.rejected)]


def dedup_parts(records: Sequence[SFTRecord | PrefRecord]) -> list[list[str]]:
    """Each record's parts in dedup form, [conversation] or [prompt, chosen, rejected]: its
    messages as role and `dedup_form` of the content, joined by separators."""
    raw = [_raw_parts(record) for record in records]
    flat = iter(dedup_forms([part for parts in raw for part in parts]))
    return [[next(flat) for _ in parts] for parts in raw]


def digest(parts: list[str]) -> bytes:
    """SHA-256 of the parts joined with a separator that cannot occur in a dedup form."""
    return hashlib.sha256((_FIELD * 2).join(parts).encode("utf-8", "surrogatepass")).digest()


class Deduplicator:
    """Remembers digests; `first_seen(d)` is True exactly once per distinct digest."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def first_seen(self, digest: bytes) -> bool:
        if digest in self._seen:
            return False
        self._seen.add(digest)
        return True

    def __len__(self) -> int:
        return len(self._seen)
