"""Per-text statistics that the cleaning rules compare with their thresholds, computed for a
whole batch of texts at once with numpy (no per-character Python work).

Definitions (the filters and the report use exactly these):

`n_chars`
    Number of Unicode code points of the cleaned text (see `normalize.clean_text`).

`zh_share`
    CJK ideographs / letters. Each code point counts as what it becomes under NFKC, so Kangxi
    radicals (U+2F00..U+2FDF, common in CMMLU) and full-width forms count as the ideographs and
    letters they stand for. CJK ideographs: CJK Unified Ideographs U+4E00..U+9FFF, Extension A
    U+3400..U+4DBF and CJK Compatibility Ideographs U+F900..U+FAFF. Letters: code points of
    Unicode general category L* (Lu, Ll, Lt, Lm, Lo), which includes the ideographs above, Latin,
    Greek, Cyrillic, kana and Hangul, and excludes digits, punctuation, symbols, emoji and white
    space. A text without letters has zh_share 0.

`rep_ratio_4gram`
    Character 4-gram repetition: a text of n code points has n-3 overlapping 4-grams
    (occurrences). An occurrence is duplicated when the same 4-gram occurred earlier in the
    text, so the ratio is (occurrences - distinct 4-grams) / occurrences: "abcdefgh" -> 0.0,
    "abcabcabc" -> 0.5 (6 occurrences, 3 distinct), 50 x "哈" -> 46/47, and a text with fewer
    than 4 code points -> 0.0. Characters, not words, because Chinese is not space-separated.
    (Counting every occurrence of a repeated 4-gram instead, the first included, flags ordinary
    English prose: " the", "ing " and "tion" recur in any paragraph; on the shared sample data
    that variant put a third of DPO-En-Zh's chosen answers over 0.6, this one 1 in 240.)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from k12tune.data.unicode_tables import CJK_RANGES, N_CODE_POINTS, is_cjk, unicode_tables

__all__ = ["CJK_RANGES", "char_stats", "is_cjk", "rep_ratio_4gram"]

_NGRAM = 4


def code_points(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All texts' code points in one uint32 array, and each text's start offset (len n+1)."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    bounds = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=bounds[1:])
    joined = "".join(texts).encode("utf-32-le", "surrogatepass")
    return np.frombuffer(joined, dtype=np.uint32), bounds


def _segment_sums(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    csum = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=csum[1:])
    return csum[bounds[1:]] - csum[bounds[:-1]]


def char_stats(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n_chars, zh_share) of every text."""
    cps, bounds = code_points(texts)
    tables = unicode_tables()
    cjk = _segment_sums(tables.cjk[cps], bounds)
    letters = _segment_sums(tables.letters[cps], bounds)
    zh_share = np.divide(cjk, letters, out=np.zeros(len(texts)), where=letters > 0)
    return np.diff(bounds), zh_share


@functools.cache
def _renumbering_buffers() -> tuple[np.ndarray, np.ndarray]:
    """A per-code-point mark (kept all zero between calls) and a dense-id table, reused so that
    a batch costs O(its length), not O(0x110000) allocations. One process, one thread."""
    return np.zeros(N_CODE_POINTS, dtype=np.uint8), np.zeros(N_CODE_POINTS, dtype=np.uint64)


def _dense_ids(cps: np.ndarray) -> tuple[np.ndarray, int]:
    """The code points renumbered 0..k-1 in code point order, and k."""
    mark, dense = _renumbering_buffers()
    mark[cps] = 1
    distinct = np.flatnonzero(mark)
    mark[distinct] = 0
    dense[distinct] = np.arange(len(distinct), dtype=np.uint64)
    return dense[cps], len(distinct)


# Texts are 4-gram counted in groups of about this many code points, so that the sort and
# the passes that build its keys run in cache (sorting 2^17 keys costs 3.3 ns each, 2^20 4.8).
_GROUP_CODE_POINTS = 1 << 17


def _distinct_4grams(cps: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per text: the number of distinct 4-grams.

    Each 4-gram is packed exactly into one uint64 together with its text's index: code points
    are first renumbered densely within the batch (b bits each), so a key is
    text_index << 4b | id0 << 3b | id1 << 2b | id2 << b | id3; sorting the keys puts equal
    4-grams of a text next to each other. Texts are taken in groups (see `_GROUP_CODE_POINTS`)
    small enough for the text index to fit. A batch with more than 2^16 distinct characters
    is halved until it fits, down to a single text, which falls back to a row-wise unique.
    """
    n_texts = len(bounds) - 1
    if len(cps) < _NGRAM:
        return np.zeros(n_texts, dtype=np.int64)
    ids, n_distinct = _dense_ids(cps)
    bits = max(1, (n_distinct - 1).bit_length())
    if _NGRAM * bits > 64:  # more than 2^16 distinct characters: halve the batch, renumber
        if n_texts == 1:
            return np.array([_distinct_4grams_rowwise(cps)], dtype=np.int64)
        mid = n_texts // 2
        left = _distinct_4grams(cps[: bounds[mid]], bounds[: mid + 1])
        right = _distinct_4grams(cps[bounds[mid] :], bounds[mid:] - bounds[mid])
        return np.concatenate([left, right])
    max_texts = 1 << (64 - _NGRAM * bits)  # text indices that fit beside the 4-gram
    counts = np.zeros(n_texts, dtype=np.int64)
    lo = 0
    while lo < n_texts:
        # The largest group from text `lo` within the size budget (at least one text).
        hi = int(np.searchsorted(bounds, bounds[lo] + _GROUP_CODE_POINTS, side="right")) - 1
        hi = min(max(hi, lo + 1), lo + max_texts)
        counts[lo:hi] = _group_distinct(ids[bounds[lo] : bounds[hi]], bounds[lo : hi + 1] - bounds[lo], bits)
        lo = hi
    return counts


def _group_distinct(ids: np.ndarray, bounds: np.ndarray, bits: int) -> np.ndarray:
    n_texts, n = len(bounds) - 1, len(ids)
    if n < _NGRAM:
        return np.zeros(n_texts, dtype=np.int64)
    m = n - _NGRAM + 1
    shift = np.uint64(bits)
    pairs = ids[:-1] << shift
    pairs |= ids[1:]
    key = np.repeat(np.arange(n_texts, dtype=np.uint64), np.diff(bounds))[:m]
    key <<= np.uint64(2 * bits)
    key |= pairs[:m]
    key <<= np.uint64(2 * bits)
    key |= pairs[2 : m + 2]
    # Drop 4-grams that run past the end of their text: those starting at its last 3 positions.
    inside = np.ones(m, dtype=bool)
    for back in range(1, _NGRAM):
        pos = bounds[1:] - back
        inside[pos[(pos >= bounds[:-1]) & (pos < m)]] = False
    key = np.sort(key[inside])
    # Each run of equal keys in sorted order is one distinct 4-gram of one text.
    first_of_run = np.empty(len(key), dtype=bool)
    first_of_run[:1] = True
    np.not_equal(key[1:], key[:-1], out=first_of_run[1:])
    run_text = (key[first_of_run] >> np.uint64(_NGRAM * bits)).astype(np.int64)
    return np.bincount(run_text, minlength=n_texts)


def _distinct_4grams_rowwise(cps: np.ndarray) -> int:
    if len(cps) < _NGRAM:
        return 0
    grams = np.lib.stride_tricks.sliding_window_view(cps, _NGRAM)
    return len(np.unique(grams, axis=0))


def rep_ratio_4gram(texts: Sequence[str]) -> np.ndarray:
    """`rep_ratio_4gram` of every text (see the module docstring)."""
    cps, bounds = code_points(texts)
    grams = np.maximum(np.diff(bounds) - (_NGRAM - 1), 0)
    repeated = grams - _distinct_4grams(cps, bounds)
    return np.divide(repeated, grams, out=np.zeros(len(texts)), where=grams > 0)
