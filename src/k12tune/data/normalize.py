"""Text clean-up applied to every message, and the normalised form used for dedup keys.

Training text keeps the author's characters: NFKC would turn Chinese full-width punctuation
("，" U+FF0C) into ASCII (","), changing the style the model learns. So `clean_text` only removes
what no one means to train on (control characters, zero-width marks, CR line ends, outer white
space), while `dedup_form` applies NFKC and collapses white space so that copies differing only
in width forms, Kangxi radicals or spacing are recognised as the same text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from k12tune.data.unicode_tables import unicode_tables

# C0/C1 controls except TAB and LF, plus zero-width space/joiners, word joiner and BOM.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")
# Field separators of `dedup_forms`: `clean_text` removes them from every text, so a
# separator in a serialised record is always structure, never content.
SEPARATORS = ("\x1e", "\x1f")
_SEPARATOR_CPS = tuple(ord(s) for s in SEPARATORS)


def clean_text(text: str) -> str:
    """CRLF/CR -> LF, invisible characters removed, outer white space stripped."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _INVISIBLE.search(text):
        text = _INVISIBLE.sub("", text)
    return text.strip()


def dedup_form(text: str) -> str:
    """NFKC, then every run of white space (any Unicode space, newlines) -> one ASCII space."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _dedup_form_of_fields(serialised: str) -> str:
    """`dedup_form` of each separator-delimited field, separators kept (the reference path)."""
    out, start = [], 0
    for pos, ch in enumerate(serialised):
        if ch in SEPARATORS:
            out.append(dedup_form(serialised[start:pos]))
            out.append(ch)
            start = pos + 1
    out.append(dedup_form(serialised[start:]))
    return "".join(out)


def dedup_forms(serialised: Sequence[str]) -> list[str]:
    """For strings of cleaned texts joined by `SEPARATORS`: each field in its `dedup_form`,
    separators unchanged. Equal to `_dedup_form_of_fields` on every input, but computed for the
    whole batch with table lookups; a string holding a code point that is not `simple` (see
    `unicode_tables`) takes the `unicodedata` path instead.
    """
    if not serialised:
        return []
    tables = unicode_tables()
    lengths = np.fromiter(map(len, serialised), dtype=np.int64, count=len(serialised))
    starts = np.zeros(len(serialised) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    cps = np.frombuffer("".join(serialised).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    n = len(cps)
    mapped = tables.nfkc[cps]
    # sep[i]: code point i is a separator; string_start[i]: a string starts at i (and at n).
    sep = np.zeros(n + 1, dtype=bool)
    np.logical_or(cps == _SEPARATOR_CPS[0], cps == _SEPARATOR_CPS[1], out=sep[:n])
    string_start = np.zeros(n + 1, dtype=bool)
    string_start[starts] = True
    # White space is sparse, so it is handled by position. Of each run of consecutive white
    # space within one string, one " " survives at the run's start when the characters just
    # before and just after the run are in the same field (neither a separator nor a string
    # boundary); every other white-space character is removed.
    spaces = np.flatnonzero(tables.space[mapped])
    spaces = spaces[~sep[spaces]]
    new_run = np.ones(len(spaces), dtype=bool)
    new_run[1:] = (spaces[1:] != spaces[:-1] + 1) | string_start[spaces[1:]]
    first = np.flatnonzero(new_run)
    last = np.append(first[1:] - 1, len(spaces) - 1) if len(first) else first
    run_start, after_run = spaces[first], spaces[last] + 1
    inside = ~string_start[run_start] & ~sep[np.maximum(run_start - 1, 0)]
    inside &= ~string_start[after_run] & ~sep[after_run]
    removed = np.ones(len(spaces), dtype=bool)
    removed[first[inside]] = False
    mapped[spaces[first[inside]]] = 0x20
    removed_at = spaces[removed]
    if len(removed_at):
        keep = np.ones(n, dtype=bool)
        keep[removed_at] = False
        mapped = mapped[keep]
    bounds = (starts - np.searchsorted(removed_at, starts)).tolist()
    text = mapped.tobytes().decode("utf-32-le", "surrogatepass")
    complex_at = np.flatnonzero(~tables.simple[cps])
    has_complex = set((np.searchsorted(starts, complex_at, side="right") - 1).tolist())
    return [
        _dedup_form_of_fields(raw) if i in has_complex else text[bounds[i] : bounds[i + 1]]
        for i, raw in enumerate(serialised)
    ]
