from __future__ import annotations

import numpy as np

from k12tune.config.data import CleanConfig
from k12tune.data.batchtext import batch_texts
from k12tune.data.dedup import Deduplicator, dedup_parts, digest
from k12tune.data.filters import (
    BatchView,
    ChineseShareFilter,
    DistinctPairFilter,
    Failures,
    LengthFilter,
    RepetitionFilter,
    build_filters,
)
from k12tune.data.normalize import clean_text, dedup_form
from k12tune.data.textstats import Texts
from k12tune.records import Origin, PrefRecord, SFTRecord


def view(texts: list[str], parts: tuple[str, ...] = ("conversation",)) -> BatchView:
    return BatchView.of(Texts.of(texts), parts)


def dropped(failures: Failures) -> list[tuple[int, str]]:
    pairs = zip(failures.indices.tolist(), failures.detail_of.tolist(), strict=True)
    return [(i, failures.details[d]) for i, d in pairs]


def test_length_filter_bounds_are_inclusive_and_counted() -> None:
    batch = view(["一二三四五六七", "一二三四五六七八", "x" * 20, "y" * 21])
    rule = LengthFilter(8, 20)
    failures = rule.apply(batch)
    assert dropped(failures) == [
        (0, "conversation: 7 code points, outside [8, 20]"),
        (3, "conversation: 21 code points, outside [8, 20]"),
    ]
    assert list(batch.alive) == [False, True, True, False]
    assert vars(rule.counts) == {"seen": 4, "kept": 2, "dropped": 2, "tagged_en": 0}
    # A second rule only sees what the first one kept.
    second = RepetitionFilter(0.6)
    assert second.apply(batch).indices.tolist() == [2]  # "x" * 20: 16/17 repeated
    assert vars(second.counts) == {"seen": 2, "kept": 1, "dropped": 1, "tagged_en": 0}


def test_repetition_filter_threshold() -> None:
    batch = view(["哈" * 30, "abcabcabc", "今天我们学习分数的加法和减法。"])
    rule = RepetitionFilter(0.5)
    failures = rule.apply(batch)
    assert dropped(failures) == [(0, "conversation: rep_ratio_4gram 0.963 > 0.5")]  # 26/27; 0.5 passes
    assert vars(rule.counts) == {"seen": 3, "kept": 2, "dropped": 1, "tagged_en": 0}


def test_chinese_share_drops_or_tags_english() -> None:
    texts = ["今天天气很好。", "Hello world, this is English.", "我爱Python编程"]  # 1.0, 0, 4/10
    failures = ChineseShareFilter(0.3, allow_english_fallback=False).apply(view(texts))
    assert dropped(failures) == [(1, "conversation: zh_share 0.000 < 0.3")]
    tagged = view(texts)
    rule = ChineseShareFilter(0.3, allow_english_fallback=True)
    assert len(rule.apply(tagged)) == 0
    assert tagged.is_zh.tolist() == [True, False, True]
    assert vars(rule.counts) == {"seen": 3, "kept": 3, "dropped": 0, "tagged_en": 1}


def test_pair_parts_fail_on_any_part_and_name_the_first() -> None:
    parts = ("prompt", "chosen", "rejected")
    texts = [
        "请解释分数。",
        "分数表示整体的一部分。",
        "不知道",  # prompt 6 < 8, rejected 3 < 8
        "什么是质数？请举例。",
        "只能被1和它本身整除的数，如2、3、5。",
        "质数就是奇数，比如9也是。",
    ]
    batch = view(texts, parts)
    failures = LengthFilter(8, 2048).apply(batch)
    assert dropped(failures) == [(0, "prompt: 6 code points, outside [8, 2048]")]


def test_failures_with_the_same_part_and_value_share_one_detail() -> None:
    parts = ("prompt", "chosen")
    # Records 0 and 2 fail on a 3-point prompt, 1 on a 3-point chosen, 3 on a 4-point prompt.
    eight = "一二三四五六七八"
    batch = view(["一二三", eight, eight, "一二三", "甲乙丙", eight, "甲乙丙丁", eight], parts)
    failures = LengthFilter(8, 2048).apply(batch)
    assert dropped(failures) == [
        (0, "prompt: 3 code points, outside [8, 2048]"),
        (1, "chosen: 3 code points, outside [8, 2048]"),
        (2, "prompt: 3 code points, outside [8, 2048]"),
        (3, "prompt: 4 code points, outside [8, 2048]"),
    ]
    assert sorted(failures.details) == [
        "chosen: 3 code points, outside [8, 2048]",
        "prompt: 3 code points, outside [8, 2048]",
        "prompt: 4 code points, outside [8, 2048]",
    ]


def test_english_fallback_pair_is_chinese_only_when_all_parts_are() -> None:
    parts = ("prompt", "chosen", "rejected")
    batch = view(["什么是光合作用？", "It is how plants make food.", "植物吃土。"], parts)
    ChineseShareFilter(0.3, allow_english_fallback=True).apply(batch)
    assert batch.is_zh.tolist() == [False]


def test_build_filters_order_follows_config() -> None:
    rules = build_filters(CleanConfig(min_chars=2, max_chars=10))
    assert [r.name for r in rules] == ["length", "zh_share", "repetition"]
    assert (rules[0].min_chars, rules[0].max_chars) == (2, 10)


def test_repetition_is_measured_only_for_records_the_cheaper_rules_kept() -> None:
    batch = view(["哈哈哈哈哈哈哈哈哈哈", "ha ha ha ha ha ha ha", "短", "光合作用是植物的过程"])
    indices = [rule.apply(batch).indices.tolist() for rule in build_filters(CleanConfig(min_chars=2))]
    assert indices == [[2], [1], [0]]
    # Records 1 (English) and 2 (too short) were never 4-gram counted.
    assert np.isnan(batch.stat("rep_ratio_4gram")).tolist() == [False, True, True, False]


def test_clean_text_and_dedup_form() -> None:
    assert clean_text("  第一行\r\n第二行\r第三\u200b行\x07  ") == "第一行\n第二行\n第三行"
    assert clean_text("\ufeff你好") == "你好"
    # NFKC: full-width letters, digits and punctuation; Kangxi radical; ideographic space.
    assert dedup_form("ＡＢＣ　１２３，⽐较\n\n  多少？") == "ABC 123,比较 多少?"


def test_dedup_first_occurrence_wins_across_width_forms() -> None:
    origin = Origin("s", "f", 1)
    a = SFTRecord([{"role": "user", "content": "１＋１＝？"}, {"role": "assistant", "content": "2"}], origin)
    b = SFTRecord([{"role": "user", "content": "1+1=?"}, {"role": "assistant", "content": "2"}], origin)
    c = SFTRecord([{"role": "user", "content": "1+1=?"}, {"role": "assistant", "content": "3"}], origin)
    d = SFTRecord([{"role": "system", "content": "1+1=?"}, {"role": "assistant", "content": "2"}], origin)
    dedup = Deduplicator()
    records = [a, b, c, d, a]
    forms = dedup_parts(*batch_texts(records), np.ones(len(records), dtype=bool))
    digests = [digest(parts) for parts in forms]
    seen = dedup.first_seen(b"".join(digests[:2])).tolist() + dedup.first_seen(b"".join(digests[2:])).tolist()
    assert seen == [True, False, True, True, False]  # roles are part of the key; across batches too
    assert len(dedup) == 3
    # Within one batch, the first of several equal digests wins; an empty batch is no batch.
    again = Deduplicator()
    assert again.first_seen(b"".join([digests[2], digests[0], digests[2], digests[3]])).tolist() == [
        True,
        True,
        False,
        True,
    ]
    assert again.first_seen(b"").tolist() == []
    assert again.first_seen(digests[0] + digests[4]).tolist() == [False, False]


def test_identical_pair_filter_compares_dedup_forms() -> None:
    origin = Origin("s", "f", 1)
    pair = PrefRecord(
        prompt=[{"role": "user", "content": "问题问题"}],
        chosen=[{"role": "assistant", "content": "答案：１"}],
        rejected=[{"role": "assistant", "content": "答案:1"}],
        origin=origin,
    )
    [forms] = dedup_parts(*batch_texts([pair]), np.ones(1, dtype=bool))
    rule = DistinctPairFilter()
    assert rule.passes(forms[1], forms[2]) is False
    assert rule.passes(forms[0], forms[1]) is True
    assert vars(rule.counts) == {"seen": 2, "kept": 1, "dropped": 1, "tagged_en": 0}
