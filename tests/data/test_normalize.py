"""The batch dedup forms (table lookup in a compiled loop) must equal the `unicodedata`
definition on every input."""

from __future__ import annotations

import random
import unicodedata

import numpy as np
import pytest

from k12tune.data import dedup
from k12tune.data.batchtext import batch_texts
from k12tune.data.dedup import DedupForms, dedup_parts, digest, reference_parts
from k12tune.data.unicode_tables import N_CODE_POINTS, unicode_tables
from k12tune.records import ROLES, Origin, PrefRecord, SFTRecord

# Characters that exercise every branch: full-width and Kangxi forms, Unicode spaces, precomposed
# and combining accents, Hangul syllables and conjoining jamo that compose across characters,
# an Oriya vowel sign that composes with the starter before it, compatibility decompositions
# into several characters, emoji with a variation selector.
TRICKY = [
    *"ab 你好，。（）ＡＢ　１２\n\t\u3000\u00a0\u2028é\u0301\u0323가\u1161\u11a8ᄀ\u0b47\u0b3e",
    *"\u2f00\ufb01\u00a8\u00bd😀\ufe0f",
]
SIMPLE = [ch for ch in TRICKY if unicode_tables().simple[ord(ch)]]
ORIGIN = Origin("s", "f", 1)


def definition(record: SFTRecord | PrefRecord) -> list[bytes]:
    """The dedup form written out from its definition, one part at a time."""
    parts = (
        [record.messages]
        if isinstance(record, SFTRecord)
        else [record.prompt, record.chosen, record.rejected]
    )
    return [
        "\x1e".join(
            m["role"] + "\x1f" + " ".join(unicodedata.normalize("NFKC", m["content"]).split())
            for m in messages
        ).encode("utf-8")
        for messages in parts
    ]


def random_record(rng: random.Random, alphabet: list[str]) -> SFTRecord | PrefRecord:
    def message(role: str) -> dict[str, str]:
        return {"role": role, "content": "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))}

    if rng.random() < 0.5:
        return SFTRecord([message(rng.choice(ROLES)) for _ in range(rng.randrange(1, 4))], ORIGIN)
    prompt = [message(rng.choice(ROLES)) for _ in range(rng.randrange(1, 3))]
    return PrefRecord(prompt, [message("assistant")], [message("assistant")], ORIGIN)


def forms_of(records: list[SFTRecord | PrefRecord], selected: np.ndarray | None = None) -> list[list[bytes]]:
    texts, layout = batch_texts(records)
    if selected is None:
        selected = np.ones(len(records), dtype=bool)
    return dedup_parts(texts, layout, selected)


def test_simple_code_points_map_to_their_nfkc_form() -> None:
    tables = unicode_tables()
    simple = np.flatnonzero(tables.simple[:0x40000])
    mismatched = [
        cp for cp in simple.tolist() if unicodedata.normalize("NFKC", chr(cp)) != chr(tables.nfkc[cp])
    ]
    assert mismatched == []
    assert len(tables.simple) == N_CODE_POINTS
    # The characters that compose with the one before them are not simple.
    assert not tables.simple[[0x1161, 0x11A8, 0x0B3E, 0x0301]].any()
    assert tables.simple[[ord("가"), ord("，"), ord("⼀"), ord("é"), ord("好")]].all()


@pytest.mark.parametrize("alphabet", [TRICKY, SIMPLE], ids=["tricky", "simple"])
def test_batch_dedup_forms_equal_the_definition_on_random_records(alphabet: list[str]) -> None:
    rng = random.Random(7)
    for _ in range(1000):
        records = [random_record(rng, alphabet) for _ in range(rng.randrange(1, 6))]
        assert forms_of(records) == [definition(r) for r in records], records


def test_simple_records_never_take_the_unicodedata_path(monkeypatch) -> None:
    def refuse(parts):
        raise AssertionError(f"{parts} took the unicodedata path")

    monkeypatch.setattr(dedup, "reference_parts", refuse)
    rng = random.Random(3)
    records = [random_record(rng, SIMPLE) for _ in range(300)]
    assert forms_of(records) == [definition(r) for r in records]


def test_dedup_forms_on_random_code_points() -> None:
    rng = random.Random(11)
    for _ in range(300):
        records = []
        for _ in range(3):
            cps = [
                rng.choice((rng.randrange(0x20, 0x3000), rng.randrange(0x3000, 0x40000))) for _ in range(24)
            ]
            text = "".join(chr(cp) for cp in cps if not 0xD800 <= cp <= 0xDFFF)
            records.append(SFTRecord([{"role": "user", "content": text}], ORIGIN))
        assert forms_of(records) == [definition(r) for r in records]


def test_only_selected_records_get_forms_in_order() -> None:
    rng = random.Random(5)
    records = [random_record(rng, TRICKY) for _ in range(40)]
    selected = np.array([rng.random() < 0.5 for _ in records])
    expected = [definition(r) for r, keep in zip(records, selected, strict=True) if keep]
    assert forms_of(records, selected) == expected


def test_digests_hash_each_record_key_in_one_stretch() -> None:
    """`DedupForms.digests` hashes slices of one buffer; it must equal `digest` over the parts
    for every record, those of the unicodedata path and the unselected ones' neighbours too."""
    rng = random.Random(13)
    for alphabet in (TRICKY, SIMPLE):
        records = [random_record(rng, alphabet) for _ in range(200)]
        selected = np.array([rng.random() < 0.7 for _ in records])
        forms = DedupForms(*batch_texts(records), selected)
        expected = [digest(definition(r)) for r, keep in zip(records, selected, strict=True) if keep]
        assert [row.tobytes() for row in forms.digests()] == expected
        assert forms.records.tolist() == np.flatnonzero(selected).tolist()


def test_dedup_forms_fold_width_space_and_keep_roles() -> None:
    record = SFTRecord(
        [
            {"role": "user", "content": "ＡＢＣ　１２３，⽐较\n\n  多少？ "},
            {"role": "assistant", "content": " 好 "},
        ],
        ORIGIN,
    )
    assert forms_of([record]) == [["user\x1fABC 123,比较 多少?\x1eassistant\x1f好".encode()]]
    assert reference_parts([record.messages]) == forms_of([record])[0]


def test_unicode_tables_are_cached_on_disk_and_rebuilt_when_the_file_is_bad(tmp_path, monkeypatch) -> None:
    from dataclasses import astuple

    from k12tune.data import unicode_tables as module

    monkeypatch.setenv("K12TUNE_CACHE_DIR", str(tmp_path))
    module.unicode_tables.cache_clear()
    try:
        built = module.unicode_tables()
        path = module.cache_path()
        assert path.parent == tmp_path and path.is_file()

        def refuse() -> None:
            raise AssertionError("built again although the cache file is whole")

        module.unicode_tables.cache_clear()
        with monkeypatch.context() as patch:
            patch.setattr(module, "build_unicode_tables", refuse)
            loaded = module.unicode_tables()
        assert all(np.array_equal(a, b) for a, b in zip(astuple(built), astuple(loaded), strict=True))
        path.write_bytes(b"not a numpy file")
        module.unicode_tables.cache_clear()
        rebuilt = module.unicode_tables()
        assert all(np.array_equal(a, b) for a, b in zip(astuple(built), astuple(rebuilt), strict=True))
        assert path.stat().st_size > 1_000_000  # written again, whole
    finally:
        module.unicode_tables.cache_clear()
