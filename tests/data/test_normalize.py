"""The batch dedup form must equal the `unicodedata` reference on every input."""

from __future__ import annotations

import random
import unicodedata

import numpy as np

from k12tune.data.normalize import _dedup_form_of_fields, dedup_forms
from k12tune.data.unicode_tables import N_CODE_POINTS, unicode_tables

# Characters that exercise every branch: full-width and Kangxi forms, Unicode spaces, the
# separators, precomposed and combining accents, Hangul syllables and conjoining jamo that
# compose across characters, an Oriya vowel sign that composes with the starter before it,
# compatibility decompositions into several characters, emoji with a variation selector.
TRICKY = [
    *"ab 你好，。（）ＡＢ　１２\n\t\u3000\u00a0\u2028é\u0301\u0323가\u1161\u11a8ᄀ\u0b47\u0b3e",
    *"\u2f00\ufb01\u00a8\u00bd😀\ufe0f\x1e\x1f",
]


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


def test_batch_dedup_forms_equal_the_reference_on_random_strings() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        batch = [
            "".join(rng.choice(TRICKY) for _ in range(rng.randrange(0, 12)))
            for _ in range(rng.randrange(1, 6))
        ]
        assert dedup_forms(batch) == [_dedup_form_of_fields(s) for s in batch], batch


def test_batch_dedup_forms_on_random_code_points() -> None:
    rng = random.Random(11)
    for _ in range(300):
        batch = []
        for _ in range(3):
            cps = [
                rng.choice((rng.randrange(0x20, 0x3000), rng.randrange(0x3000, 0x40000))) for _ in range(24)
            ]
            batch.append("".join(chr(cp) for cp in cps if not 0xD800 <= cp <= 0xDFFF))
        assert dedup_forms(batch) == [_dedup_form_of_fields(s) for s in batch]


def test_dedup_forms_fold_width_space_and_keep_separators() -> None:
    assert dedup_forms(["user\x1fＡＢＣ　１２３，⽐较\n\n  多少？ \x1eassistant\x1f 好 ", "", "a"]) == [
        "user\x1fABC 123,比较 多少?\x1eassistant\x1f好",
        "",
        "a",
    ]
