"""A batch of records laid out as code points, once, for every per-character computation.

The cleaning rules judge *part texts*: a record's parts are SFT [conversation], preference
[prompt, chosen, rejected], and a part's text is its messages' contents joined with "\\n".
SFT is judged whole on purpose: Chinese is dense, so a complete question such as "什么是API？"
has 7 code points and a per-turn minimum of 8 would drop it, and a Chinese question with a
code answer is Chinese teaching data although the answer alone is not.

The dedup key reads the same code points message by message (role and content), so the layout
also records where each message's content lies in the part texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from k12tune.data.textstats import Texts
from k12tune.records import ROLES, Message, PrefRecord, SFTRecord

ROLE_CODES: dict[str, int] = {role: code for code, role in enumerate(ROLES)}


@dataclass(frozen=True, slots=True)
class MessageLayout:
    """Message m has role `ROLES[roles[m]]` and content `cps[content_bounds[2m]:content_bounds[2m+1]]`
    of the batch's `Texts`; part p holds messages `part_messages[p]..part_messages[p+1]-1`,
    record k parts `record_parts[k]..record_parts[k+1]-1` (text p of the `Texts` is part p)."""

    content_bounds: np.ndarray
    roles: np.ndarray
    part_messages: np.ndarray
    record_parts: np.ndarray


def record_parts(record: SFTRecord | PrefRecord) -> list[list[Message]]:
    if isinstance(record, SFTRecord):
        return [record.messages]
    return [record.prompt, record.chosen, record.rejected]


def _offsets(sizes: list[int]) -> np.ndarray:
    out = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def batch_texts(records: Sequence[SFTRecord | PrefRecord]) -> tuple[Texts, MessageLayout]:
    """The part texts of `records` (record k owns consecutive parts) and their message layout."""
    texts: list[str] = []
    lengths: list[int] = []
    roles: list[int] = []
    part_sizes: list[int] = []
    parts_per_record: list[int] = []
    for record in records:
        parts = record_parts(record)
        parts_per_record.append(len(parts))
        for messages in parts:
            contents = [m["content"] for m in messages]
            texts.append("\n".join(contents))
            lengths.extend(map(len, contents))
            roles.extend(ROLE_CODES[m["role"]] for m in messages)
            part_sizes.append(len(messages))
    batch = Texts.of(texts)
    part_messages = _offsets(part_sizes)
    # A content starts where its part text starts, plus the contents and "\n"s before it.
    steps = _offsets([length + 1 for length in lengths])
    first_in_part = np.repeat(part_messages[:-1], part_sizes)
    starts = np.repeat(batch.bounds[:-1], part_sizes) + steps[:-1] - steps[first_in_part]
    bounds = np.empty(2 * len(lengths), dtype=np.int64)
    bounds[0::2] = starts
    bounds[1::2] = starts + np.asarray(lengths, dtype=np.int64)
    layout = MessageLayout(
        bounds, np.asarray(roles, dtype=np.uint8), part_messages, _offsets(parts_per_record)
    )
    return batch, layout
