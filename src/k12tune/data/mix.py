"""`MixedBucketSampler`: the order in which training records are written (and, later, fed).

Two goals: Chinese records make up `zh_ratio` of the stream, and every length bucket is spread
evenly through it, so that no bucket starves (short answers bunched at the start, long ones at
the end) and every stretch of the stream looks like the whole.

How the order is built, for a given seed and epoch:
1. Records are split by language (lang == "zh" vs the rest) and, within a language, by length
   bucket (`length_edges` e1 < e2 < ...: bucket k holds lengths in [e_k, e_{k+1})).
2. Within a bucket, records are shuffled with a generator seeded by (seed, epoch).
3. A language's stream interleaves its buckets by even spacing: the j-th of a bucket's n
   records gets the position key (j + 0.5) / n and the stream is sorted by key (ties: lower
   bucket first). Buckets of equal size therefore rotate strictly (b0, b1, b2, b0, ...), and
   in any prefix a bucket's share differs from its overall share by at most one record.
4. The two language streams are merged the same way with the quota: the j-th Chinese record
   gets key (j + 0.5) / zh_ratio, the j-th other one (j + 0.5) / (1 - zh_ratio); ties go to
   Chinese. While both pools last, every prefix of t records holds zh_ratio * t Chinese
   records, within one.

When one pool runs out (`when_exhausted`):
  continue  the rest of the other pool follows (default: every record exactly once; the ratio
            over the whole file is then the pools' natural ratio once the short pool ends)
  stop      the stream ends where the first pool ends (exact ratio; the rest is not used)
  cycle     the short pool is repeated, reshuffled each round, until the long pool ends
            (exact ratio; short-pool records appear more than once). An empty pool cannot be
            cycled: the stream is then the other pool alone.

The sampler is a plain iterable of indices with `__len__` and `set_epoch`, so a torch
`DataLoader(sampler=...)` accepts it as it is, without this module importing torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np

Exhausted = Literal["continue", "stop", "cycle"]


class MixedBucketSampler:
    def __init__(
        self,
        langs: Sequence[str] | np.ndarray,
        lengths: Sequence[int] | np.ndarray,
        *,
        zh_ratio: float = 0.7,
        length_edges: Sequence[int] = (256, 512, 1024),
        seed: int = 0,
        when_exhausted: Exhausted = "continue",
    ) -> None:
        if not 0.0 <= zh_ratio <= 1.0:
            raise ValueError(f"zh_ratio must be in [0, 1], got {zh_ratio}")
        if len(langs) != len(lengths):
            raise ValueError(f"langs ({len(langs)}) and lengths ({len(lengths)}) differ in length")
        self.is_zh = np.asarray(langs) == "zh"
        self.bucket = np.searchsorted(
            np.asarray(length_edges), np.asarray(lengths, dtype=np.int64), side="right"
        )
        self.n_buckets = len(length_edges) + 1
        self.zh_ratio = zh_ratio
        self.seed = seed
        self.when_exhausted = when_exhausted
        self.epoch = 0
        self._cache: tuple[int, np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        """A new epoch gets a new shuffle (as DistributedSampler.set_epoch does)."""
        self.epoch = epoch

    def order(self) -> np.ndarray:
        """The record indices of this epoch's stream (int64)."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        zh = np.flatnonzero(self.is_zh)
        other = np.flatnonzero(~self.is_zh)
        zh_stream = self._language_stream(zh, rng)
        other_stream = self._language_stream(other, rng)
        result = self._merge(zh_stream, other_stream, zh, other, rng)
        self._cache = (self.epoch, result)
        return result

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return len(self.order())

    def _language_stream(self, members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        keys, bucket_ids, picked = [], [], []
        for b in range(self.n_buckets):
            in_bucket = members[self.bucket[members] == b]
            if len(in_bucket) == 0:
                continue
            picked.append(rng.permutation(in_bucket))
            keys.append((np.arange(len(in_bucket)) + 0.5) / len(in_bucket))
            bucket_ids.append(np.full(len(in_bucket), b))
        if not picked:
            return np.zeros(0, dtype=np.int64)
        order = np.lexsort((np.concatenate(bucket_ids), np.concatenate(keys)))
        return np.concatenate(picked)[order].astype(np.int64)

    def _merge(
        self,
        zh_stream: np.ndarray,
        other_stream: np.ndarray,
        zh: np.ndarray,
        other: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        q = self.zh_ratio
        if self.when_exhausted == "cycle" and len(zh_stream) and len(other_stream) and 0 < q < 1:
            zh_end = _last_key(len(zh_stream), q)
            other_end = _last_key(len(other_stream), 1 - q)
            if zh_end < other_end:
                zh_stream = self._cycled(zh_stream, zh, _count_within(other_end, q), rng)
            elif other_end < zh_end:
                other_stream = self._cycled(other_stream, other, _count_within(zh_end, 1 - q), rng)
        zh_keys = _keys(len(zh_stream), q)
        other_keys = _keys(len(other_stream), 1 - q)
        keys = np.concatenate([zh_keys, other_keys])
        is_other = np.concatenate([np.zeros(len(zh_stream), bool), np.ones(len(other_stream), bool)])
        position = np.concatenate([np.arange(len(zh_stream)), np.arange(len(other_stream))])
        order = np.lexsort((position, is_other, keys))
        merged = np.concatenate([zh_stream, other_stream])[order]
        if self.when_exhausted == "stop" and len(zh_stream) and len(other_stream):
            cutoff = min(zh_keys[-1], other_keys[-1])
            merged = merged[: int(np.searchsorted(keys[order], cutoff, side="right"))]
        return merged

    def _cycled(
        self, stream: np.ndarray, members: np.ndarray, needed: int, rng: np.random.Generator
    ) -> np.ndarray:
        rounds = [stream]
        total = len(stream)
        while total < needed:
            rounds.append(self._language_stream(members, rng))
            total += len(rounds[-1])
        return np.concatenate(rounds)[:needed]


def _keys(n: int, share: float) -> np.ndarray:
    if share <= 0:
        return np.full(n, np.inf)
    return (np.arange(n) + 0.5) / share


def _last_key(n: int, share: float) -> float:
    return (n - 0.5) / share


def _count_within(limit: float, share: float) -> int:
    """How many keys (j + 0.5) / share are <= limit."""
    return int(np.floor(limit * share - 0.5)) + 1
