from __future__ import annotations

import numpy as np
import pytest

from k12tune.data.mix import MixedBucketSampler
from k12tune.data.split import copies, is_val, record_id


def zh_prefix_shares(sampler: MixedBucketSampler, langs: list[str]) -> np.ndarray:
    is_zh = np.array(langs)[sampler.order()] == "zh"
    return np.cumsum(is_zh) / np.arange(1, len(is_zh) + 1)


def test_quota_holds_in_every_prefix_while_both_pools_last() -> None:
    langs = ["zh"] * 700 + ["en"] * 300
    sampler = MixedBucketSampler(langs, [100] * 1000, zh_ratio=0.7, seed=3)
    order = sampler.order()
    assert sorted(order.tolist()) == list(range(1000))  # every record exactly once
    is_zh = np.array(langs)[order] == "zh"
    counts = np.cumsum(is_zh)
    t = np.arange(1, 1001)
    assert np.all(np.abs(counts - 0.7 * t) <= 1)


def test_buckets_are_spread_evenly_and_rotate() -> None:
    # 4 buckets of 25 records each (edges 10, 20, 30), one language.
    lengths = [5] * 25 + [15] * 25 + [25] * 25 + [35] * 25
    sampler = MixedBucketSampler(["zh"] * 100, lengths, length_edges=[10, 20, 30], zh_ratio=1.0)
    buckets = sampler.bucket[sampler.order()]
    assert buckets[:8].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]  # equal buckets rotate strictly
    # Unequal buckets: every prefix holds each bucket's share within one record.
    lengths = [5] * 10 + [15] * 30 + [35] * 60
    sampler = MixedBucketSampler(["zh"] * 100, lengths, length_edges=[10, 20, 30], zh_ratio=1.0)
    buckets = sampler.bucket[sampler.order()]
    t = np.arange(1, 101)
    for bucket, share in ((0, 0.1), (1, 0.3), (3, 0.6)):
        assert np.all(np.abs(np.cumsum(buckets == bucket) - share * t) <= 1), bucket


@pytest.mark.parametrize(
    ("mode", "length", "distinct"),
    [("continue", 100, 100), ("stop", 71, 71), ("cycle", 165, 100)],
)
def test_when_a_pool_runs_out(mode: str, length: int, distinct: int) -> None:
    langs = ["zh"] * 50 + ["en"] * 50
    sampler = MixedBucketSampler(langs, [10] * 100, zh_ratio=0.7, when_exhausted=mode, seed=1)
    order = sampler.order()
    assert len(order) == len(sampler) == length
    assert len(set(order.tolist())) == distinct
    shares = zh_prefix_shares(sampler, langs)
    if mode == "continue":
        assert shares[-1] == 0.5  # natural ratio after zh ran out at position 71
        assert set(np.array(langs)[order[71:]]) == {"en"}
    else:
        assert abs(shares[-1] - 0.7) < 0.01
    if mode == "cycle":  # short pool repeated: each zh record 2 or 3 times, all en once
        zh_counts = np.bincount(order, minlength=100)[:50]
        assert set(zh_counts.tolist()) <= {2, 3}
        assert np.bincount(order, minlength=100)[50:].tolist() == [1] * 50


def test_empty_pool_and_extreme_ratios() -> None:
    only_en = MixedBucketSampler(["en"] * 5, [1] * 5, zh_ratio=0.7, when_exhausted="cycle")
    assert sorted(only_en.order().tolist()) == [0, 1, 2, 3, 4]
    all_zh_first = MixedBucketSampler(["en", "zh", "en", "zh"], [1] * 4, zh_ratio=1.0)
    assert np.array(["en", "zh", "en", "zh"])[all_zh_first.order()].tolist() == ["zh", "zh", "en", "en"]
    with pytest.raises(ValueError, match="zh_ratio"):
        MixedBucketSampler(["zh"], [1], zh_ratio=1.5)


def test_deterministic_per_seed_and_epoch() -> None:
    langs = ["zh", "en"] * 100
    lengths = list(range(200))
    a = MixedBucketSampler(langs, lengths, seed=7).order()
    b = MixedBucketSampler(langs, lengths, seed=7).order()
    c = MixedBucketSampler(langs, lengths, seed=8).order()
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    sampler = MixedBucketSampler(langs, lengths, seed=7)
    sampler.set_epoch(1)
    assert sampler.order().tolist() != a.tolist()
    assert sorted(sampler.order().tolist()) == sorted(a.tolist())


def test_works_as_a_torch_sampler() -> None:
    import torch

    data = list(range(40))
    sampler = MixedBucketSampler(["zh"] * 30 + ["en"] * 10, [3] * 40, seed=0)
    loader = torch.utils.data.DataLoader(data, batch_size=8, sampler=sampler)
    seen = torch.cat(list(loader)).tolist()
    assert seen == sampler.order().tolist()


def test_split_and_weights_are_fixed_by_the_digest() -> None:
    import hashlib

    digests = [hashlib.sha256(str(i).encode()).digest() for i in range(20_000)]
    blob = b"".join(digests)
    val = is_val(blob, 0.1)
    assert 1800 < val.sum() < 2200  # 10% within 5 standard deviations
    # The definition, one digest at a time: bytes 0..7 (val) and 8..15 (copies) as a fraction.
    unit = [(int.from_bytes(d[:8], "big") / 2**64, int.from_bytes(d[8:16], "big") / 2**64) for d in digests]
    assert val.tolist() == [u < 0.1 for u, _ in unit]
    assert copies(blob, 2.5).tolist() == [2 + (u < 0.5) for _, u in unit]
    assert set(copies(blob, 1.0).tolist()) == {1}
    assert set(copies(blob, 2.0).tolist()) == {2}
    assert set(copies(blob, 0.0).tolist()) == {0}
    half = copies(blob, 0.5).sum()
    assert 9700 < half < 10300
    # Digests whose leading bytes are at the edges of the double's precision.
    edges = [bytes([0xFF] * 8 + [0x80] + [0] * 23), bytes([0] * 7 + [1] + [0xFF] * 24), bytes(32)]
    for d in edges:
        assert is_val(d, 0.5).tolist() == [int.from_bytes(d[:8], "big") / 2**64 < 0.5]
        assert copies(d, 0.5).tolist() == [int(int.from_bytes(d[8:16], "big") / 2**64 < 0.5)]
    assert record_id(digests[0]) == digests[0][:12].hex()
