from __future__ import annotations

import collections
import random
import unicodedata
from types import SimpleNamespace

import numpy as np
import pytest

from k12tune.data.textstats import Texts, char_stats, is_cjk, rep_ratio_4gram


def text_stats(texts: list[str]) -> SimpleNamespace:
    """The three statistics of a batch, as the filters read them."""
    batch = Texts.of(texts)
    n_chars, zh_share = char_stats(batch)
    return SimpleNamespace(n_chars=n_chars, zh_share=zh_share, rep_ratio_4gram=rep_ratio_4gram(batch))


def reference(text: str) -> tuple[int, float, float]:
    """The module's definitions, written the slow obvious way."""
    letters = cjk = 0
    for ch in text:
        image = unicodedata.normalize("NFKC", ch)
        letters += sum(unicodedata.category(c)[0] == "L" for c in image)
        cjk += sum(is_cjk(ord(c)) for c in image)
    grams = [text[i : i + 4] for i in range(len(text) - 3)]
    rep = 1 - len(set(grams)) / len(grams) if grams else 0.0
    return len(text), (cjk / letters if letters else 0.0), rep


CASES = {
    # text: (n_chars, zh_share, rep_ratio_4gram), worked out by hand
    "今天天气很好。": (7, 1.0, 0.0),  # 6 ideographs, "。" is punctuation
    "Hello world": (11, 0.0, 0.0),  # 10 letters, no ideograph
    "我爱Python": (8, 2 / 8, 0.0),  # 2 ideographs of 8 letters
    "你好😀😀！": (5, 1.0, 0.0),  # emoji and full-width "！" are not letters
    "１２３ＡＢＣ中文": (8, 2 / 5, 0.0),  # full-width digits are not letters, ＡＢＣ are
    "⽐较": (2, 1.0, 0.0),  # U+2F50 Kangxi radical counts as the ideograph 比
    "abcabcabc": (9, 0.0, 0.5),  # 6 4-grams, 3 distinct
    "哈" * 50: (50, 1.0, 46 / 47),
    "abc": (3, 0.0, 0.0),  # fewer than 4 code points: no 4-grams
    "": (0, 0.0, 0.0),
    "123 + 456 = 579": (15, 0.0, 0.0),  # no letters at all
}


def test_hand_made_strings_have_exact_values() -> None:
    texts = list(CASES)
    stats = text_stats(texts)
    for i, text in enumerate(texts):
        n_chars, zh_share, rep = CASES[text]
        assert stats.n_chars[i] == n_chars, text
        assert stats.zh_share[i] == pytest.approx(zh_share, abs=1e-12), text
        assert stats.rep_ratio_4gram[i] == pytest.approx(rep, abs=1e-12), text
        assert (n_chars, zh_share, rep) == pytest.approx(reference(text)), text


def test_ascii_letters_are_exactly_a_to_z_in_both_cases() -> None:
    # ASCII skips the tables (see `kernels.letter_counts`): each character next to one
    # ideograph gives zh_share 1/2 for a letter, 1 for anything else.
    texts = [chr(c) + "中" for c in range(128)]
    stats = text_stats(texts)
    expected = [0.5 if chr(c).isascii() and chr(c).isalpha() else 1.0 for c in range(128)]
    assert list(stats.zh_share) == expected
    assert expected.count(0.5) == 52
    assert [reference(t)[1] for t in texts] == expected


def test_batch_equals_one_by_one_and_reference(shared_data) -> None:
    import json

    records = json.loads((shared_data / "sft" / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    texts = [f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in records[:300]]
    batch = text_stats(texts)
    for i in range(0, 300, 37):
        single = text_stats([texts[i]])
        assert single.n_chars[0] == batch.n_chars[i]
        assert single.rep_ratio_4gram[0] == batch.rep_ratio_4gram[i]
        assert (batch.n_chars[i], batch.zh_share[i], batch.rep_ratio_4gram[i]) == pytest.approx(
            reference(texts[i])
        )


def test_4grams_do_not_cross_text_boundaries() -> None:
    # "abcd" ends one text and starts the next: each text alone has no repetition.
    stats = text_stats(["xyzabcd", "abcdxyz"])
    assert list(stats.rep_ratio_4gram) == [0.0, 0.0]


def test_many_distinct_characters_and_long_texts() -> None:
    # 70,000 distinct code points in one text: every 4-gram is distinct.
    wide = "".join(chr(cp) for cp in range(0x4E00, 0x4E00 + 20_000))
    wide += "".join(chr(cp) for cp in range(0x20000, 0x20000 + 50_000))
    texts = [wide, "abcabcabc", wide[:100] + wide[:100]]
    stats = text_stats(texts)
    assert stats.rep_ratio_4gram[0] == 0.0
    assert stats.rep_ratio_4gram[1] == 0.5
    assert stats.rep_ratio_4gram[2] == pytest.approx(reference(texts[2])[2])
    # Extension B ideographs are letters (where assigned) but not in the counted CJK ranges.
    ext_b_letters = sum(unicodedata.category(chr(0x20000 + i)) == "Lo" for i in range(50_000))
    assert ext_b_letters > 49_000
    assert stats.zh_share[0] == pytest.approx(20_000 / (20_000 + ext_b_letters))


@pytest.mark.parametrize(
    "code_points",
    [
        (0x41, 0x41 + (1 << 16), 0x4E00, 0x4E00 + (1 << 15), 0x10FFFD, 0x20),
        (0x41, 0x8041, 0x4E00, 0xFFFD, 0x20),
    ],
    ids=["astral", "bmp-only"],  # the two ways the kernel keys a 4-gram
)
def test_4gram_hash_collisions_do_not_merge_4grams(code_points: tuple[int, ...]) -> None:
    # Code points that differ only in high bits, and 4-grams made of the same characters in
    # another order: all distinct, in texts long enough to fill and wrap the hash table.
    rng = random.Random(1)
    alphabet = [chr(cp) for cp in code_points]
    texts = ["".join(rng.choice(alphabet) for _ in range(n)) for n in (4, 5, 17, 300, 5000)]
    stats = text_stats(texts)
    assert stats.rep_ratio_4gram.tolist() == pytest.approx([reference(t)[2] for t in texts])


def test_4grams_of_a_text_that_leaves_the_bmp_late() -> None:
    # The kernel counts a text as BMP-only until a code point says otherwise, then counts it
    # again the general way: in one batch, BMP texts and texts whose first astral character
    # comes after many repeated 4-grams, each the same text twice in a row, must all match.
    rng = random.Random(7)
    bmp = [chr(cp) for cp in (0x41, 0x42, 0x4E00, 0x4E01)]
    texts = []
    for n in (10, 200, 3000):
        body = "".join(rng.choice(bmp) for _ in range(n))
        for late in (body, body + "😀" + body[:50], body[: n // 2] + "\U00020000" + body):
            texts += [late, late]
    stats = text_stats(texts)
    assert stats.rep_ratio_4gram.tolist() == pytest.approx([reference(t)[2] for t in texts])
    assert stats.rep_ratio_4gram[2] != stats.rep_ratio_4gram[0]  # the late emoji counts


def test_repetition_only_for_selected_texts() -> None:
    texts = Texts.of(["哈哈哈哈哈", "abcabcabc", "xyz"])
    ratios = rep_ratio_4gram(texts, np.array([False, True, True]))
    assert np.isnan(ratios[0]) and ratios[1] == 0.5 and ratios[2] == 0.0


def test_repetition_counts_each_repeat_once() -> None:
    text = "一二三四一二三四一二三四"  # 9 4-grams, 4 distinct
    stats = text_stats([text])
    counts = collections.Counter(text[i : i + 4] for i in range(len(text) - 3))
    assert len(counts) == 4
    assert stats.rep_ratio_4gram[0] == pytest.approx(5 / 9)
    assert isinstance(stats.n_chars, np.ndarray)
