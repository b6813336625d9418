"""Per-code-point lookup tables, so that batch code works on numpy arrays instead of calling
`unicodedata` once per character.

`cjk[c]`, `letters[c]`
    How many CJK ideographs and how many letters (general category L*) the NFKC form of code
    point c holds (see `textstats` for the definitions they serve).
`space[c]`
    `chr(c).isspace()`: what `str.split()` splits on.
`nfkc[c]`, `simple[c]`
    For a *simple* code point, `nfkc[c]` is its NFKC form, a single code point, and for any
    string made only of simple code points NFKC(s) is the character-wise image
    `nfkc[s[0]] nfkc[s[1]] ...`. Non-simple code points map to themselves; texts holding one
    must go through `unicodedata.normalize`.

Why character-wise mapping is exact for simple strings. NFKC(s) = compose(reorder(NFKD(s)))
and NFKD(s) is the concatenation of the NFKD(c). Call c simple when (1) NFKC(c) is one code
point and (2) the first code point of NFKD(c) is a starter (combining class 0) that is never
the second element of a canonical composition (such as U+0B3E in U+0B47 U+0B3E -> U+0B4B, or a
Hangul vowel or trailing-consonant jamo). By (2) every chunk NFKD(c) starts with a starter that
nothing before it can combine with: canonical reordering never moves a mark across it and
composition never joins across it, so compose(reorder(NFKD(s))) is the concatenation of
compose(NFKD(c)) = NFKC(c). Nearly all K12 text is simple: CJK ideographs, Kangxi radicals,
full-width punctuation and forms, ASCII, accented Latin letters, Hangul syllables, emoji.

Built once per machine (about 0.5 s: code points of planes 4-13 (unassigned) and 15-16
(private use) need no lookup; they are stable, simple, and neither letters nor space), then
loaded from a cache file (in K12TUNE_CACHE_DIR, default ~/.cache/k12tune) by every process
that needs them, each worker of the data stage included. The file's name carries the Unicode
version and a hash of this module's source, so an edit here or a new Python builds it again.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import unicodedata
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np

from k12tune.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

N_CODE_POINTS = 0x110000
CJK_RANGES: tuple[tuple[int, int], ...] = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF))
# Ranges that may hold assigned, non-private characters (planes 0-3 and 14).
_LOOKUP_RANGES: tuple[range, ...] = (range(0, 0x40000), range(0xE0000, 0xF0000))
_HANGUL_VOWELS_AND_TRAILS: tuple[range, ...] = (range(0x1161, 0x1176), range(0x11A8, 0x11C3))


def is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "L"


@dataclass(frozen=True)
class UnicodeTables:
    cjk: np.ndarray  # uint8
    letters: np.ndarray  # uint8
    space: np.ndarray  # bool
    nfkc: np.ndarray  # uint32
    simple: np.ndarray  # bool


def _composition_seconds() -> set[int]:
    """Starters that a canonical composition can attach to the starter before them."""
    seconds = {cp for r in _HANGUL_VOWELS_AND_TRAILS for cp in r}
    for r in _LOOKUP_RANGES:
        for cp in r:
            decomposition = unicodedata.decomposition(chr(cp))
            if not decomposition or decomposition.startswith("<"):
                continue
            parts = decomposition.split()
            if len(parts) == 2 and unicodedata.combining(chr(int(parts[1], 16))) == 0:
                seconds.add(int(parts[1], 16))
    return seconds


def cache_path() -> Path:
    root = (
        os.environ.get("K12TUNE_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "k12tune"
    )
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return Path(root) / f"unicode-tables-{unicodedata.unidata_version}-{source}.npz"


@functools.cache
def unicode_tables() -> UnicodeTables:
    """The tables, from the cache file when it is there and whole, else built (and cached)."""
    path = cache_path()
    try:
        with np.load(path) as saved:
            tables = UnicodeTables(*(saved[f.name] for f in fields(UnicodeTables)))
        if all(len(table) == N_CODE_POINTS for table in astuple(tables)):
            return tables
    except (OSError, ValueError, KeyError):
        pass  # absent, unreadable or from an older layout: build it
    tables = build_unicode_tables()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **{f.name: getattr(tables, f.name) for f in fields(UnicodeTables)})
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:  # a read-only home: every process builds its own
        log.debug("cannot cache the Unicode tables in %s: %s", path, exc)
    return tables


def build_unicode_tables() -> UnicodeTables:
    cjk = np.zeros(N_CODE_POINTS, dtype=np.uint8)
    letters = np.zeros(N_CODE_POINTS, dtype=np.uint8)
    space = np.zeros(N_CODE_POINTS, dtype=bool)
    nfkc = np.arange(N_CODE_POINTS, dtype=np.uint32)
    simple = np.ones(N_CODE_POINTS, dtype=bool)
    for lo, hi in CJK_RANGES:
        cjk[lo : hi + 1] = 1
    simple[0xD800:0xE000] = False  # lone surrogates: leave them to unicodedata
    seconds = _composition_seconds()
    for r in _LOOKUP_RANGES:
        for cp in r:
            if 0xD800 <= cp <= 0xDFFF:
                continue
            ch = chr(cp)
            if ch.isspace():
                space[cp] = True
            if unicodedata.is_normalized("NFKD", ch):
                # NFKD-stable, hence NFKC-stable: its own image.
                letters[cp] = _is_letter(ch)
                simple[cp] = unicodedata.combining(ch) == 0 and cp not in seconds
                continue
            image = unicodedata.normalize("NFKC", ch)
            letters[cp] = sum(map(_is_letter, image))
            cjk[cp] = sum(is_cjk(ord(c)) for c in image)
            first = unicodedata.normalize("NFKD", ch)[0]
            if len(image) == 1 and unicodedata.combining(first) == 0 and ord(first) not in seconds:
                nfkc[cp] = ord(image)
            else:
                simple[cp] = False
    return UnicodeTables(cjk=cjk, letters=letters, space=space, nfkc=nfkc, simple=simple)
