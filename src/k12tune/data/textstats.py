"""Per-text statistics that the cleaning rules compare with their thresholds, computed for a
whole batch of texts at once: one code point array per batch (`Texts`), read by compiled loops
(`kernels`), so there is no per-character Python work.

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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from k12tune.data.unicode_tables import CJK_RANGES, is_cjk, unicode_tables

__all__ = ["CJK_RANGES", "Texts", "char_stats", "is_cjk", "rep_ratio_4gram"]

_NGRAM = 4


@dataclass(frozen=True, slots=True)
class Texts:
    """A batch of texts as one uint32 code point array: text t is `cps[bounds[t]:bounds[t+1]]`.
    Encoded once per batch; every statistic (and the dedup keys) reads the same array."""

    cps: np.ndarray
    bounds: np.ndarray

    @classmethod
    def of(cls, texts: Sequence[str]) -> Texts:
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        bounds = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        joined = "".join(texts).encode("utf-32-le", "surrogatepass")
        return cls(np.frombuffer(joined, dtype=np.uint32), bounds)

    def __len__(self) -> int:
        return len(self.bounds) - 1


def char_stats(texts: Texts) -> tuple[np.ndarray, np.ndarray]:
    """(n_chars, zh_share) of every text."""
    from k12tune.data import kernels

    tables = unicode_tables()
    cjk, letters = kernels.letter_counts(texts.cps, texts.bounds, tables.cjk, tables.letters)
    zh_share = np.divide(cjk, letters, out=np.zeros(len(texts)), where=letters > 0)
    return np.diff(texts.bounds), zh_share


def rep_ratio_4gram(texts: Texts, selected: np.ndarray | None = None) -> np.ndarray:
    """`rep_ratio_4gram` of every text where `selected` (default: all), NaN elsewhere."""
    from k12tune.data import kernels

    if selected is None:
        selected = np.ones(len(texts), dtype=bool)
    grams = np.maximum(np.diff(texts.bounds) - (_NGRAM - 1), 0)
    repeated = grams - kernels.distinct_4grams(texts.cps, texts.bounds, selected)
    ratios = np.divide(repeated, grams, out=np.zeros(len(texts)), where=grams > 0)
    ratios[~selected] = np.nan
    return ratios
