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

# C0/C1 controls except TAB and LF, plus zero-width space/joiners, word joiner and BOM. This
# removes the separators of the dedup form (0x1E, 0x1F; see `dedup`) from every text too.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")


def clean_text(text: str) -> str:
    """CRLF/CR -> LF, invisible characters removed, outer white space stripped."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _INVISIBLE.search(text):
        text = _INVISIBLE.sub("", text)
    return text.strip()


def dedup_form(text: str) -> str:
    """NFKC, then every run of white space (any Unicode space, newlines) -> one ASCII space.

    The definition; `dedup` computes it for a whole batch by table lookup, and calls this only
    for texts holding a code point the tables cannot map alone."""
    return " ".join(unicodedata.normalize("NFKC", text).split())
