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
    is_sep = (cps == _SEPARATOR_CPS[0]) | (cps == _SEPARATOR_CPS[1])
    ws = tables.space[mapped] & ~is_sep
    # A field boundary sits before every separator, after every separator and at string ends.
    starts_field = np.zeros(n + 1, dtype=bool)
    starts_field[starts] = True
    starts_field[1:n][is_sep[:-1]] = True
    # White space survives as one " " when it starts a run, does not start a field, and the
    # first character after the run belongs to the same field (it is not a separator, and
    # not the start of the next string).
    prev_ws = np.zeros(n, dtype=bool)
    prev_ws[1:] = ws[:-1]
    stop = ~ws | starts_field[:n]
    positions = np.where(stop, np.arange(n), n)
    next_stop = np.minimum.accumulate(positions[::-1])[::-1]
    next_is_content = np.zeros(n + 1, dtype=bool)
    next_is_content[:n] = ~ws & ~is_sep & ~starts_field[:n]
    keep_space = ws & ~prev_ws & ~starts_field[:n] & next_is_content[next_stop]
    keep = ~ws | keep_space
    out = np.where(ws, np.uint32(0x20), mapped)[keep]
    kept_before = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(keep, out=kept_before[1:])
    new_starts = kept_before[starts]
    text = out.tobytes().decode("utf-32-le", "surrogatepass")
    complex_before = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(~tables.simple[cps], out=complex_before[1:])
    has_complex = (complex_before[starts[1:]] > complex_before[starts[:-1]]).tolist()
    bounds = new_starts.tolist()
    return [
        _dedup_form_of_fields(raw) if has_complex[i] else text[bounds[i] : bounds[i + 1]]
        for i, raw in enumerate(serialised)
    ]
