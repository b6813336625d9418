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
from dataclasses import dataclass, field

import numpy as np

from k12tune.data.textstats import Texts
from k12tune.records import ROLES, Message, PrefRecord, SFTRecord

ROLE_CODES: dict[str, int] = {role: code for code, role in enumerate(ROLES)}
# The role names as the kernels write them: role r is ROLE_NAMES[ROLE_NAME_BOUNDS[r]:ROLE_NAME_BOUNDS[r+1]].
ROLE_NAMES = np.frombuffer("".join(ROLES).encode("ascii"), dtype=np.uint8)
ROLE_NAME_BOUNDS = np.cumsum([0, *map(len, ROLES)], dtype=np.int64)
# An output line's head, as `kernels.json_lines` writes it and `rejects.record_json` cuts it
# off: ID_KEY, the record id's hex digits, SOURCE_KEY, the source as JSON, LANG_KEYS[is_zh].
ID_KEY = b'{"id":"'
SOURCE_KEY = b'","source":'
LANG_KEYS = (b',"lang":"en",', b',"lang":"zh",')


# No raw JSON: every content is written from its code points.
NO_RAW = np.frombuffer(b"", dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class MessageLayout:
    """Message m has role `ROLES[roles[m]]` and content `cps[content_bounds[2m]:content_bounds[2m+1]]`
    of the batch's `Texts`; part p holds messages `part_messages[p]..part_messages[p+1]-1`,
    record k parts `record_parts[k]..record_parts[k+1]-1` (text p of the `Texts` is part p).

    `raw[raw_bounds[2m]:raw_bounds[2m+1]]`, when raw_bounds[2m] >= 0, is message m's content
    exactly as orjson writes it inside a JSON string: bytes of the input line that the
    compiled scanner read it from (`sftscan`), which the output writers copy instead of
    encoding the code points again."""

    content_bounds: np.ndarray
    roles: np.ndarray
    part_messages: np.ndarray
    record_parts: np.ndarray
    raw: np.ndarray = field(default_factory=lambda: NO_RAW)
    raw_bounds: np.ndarray | None = None  # None: no content has raw bytes

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The four arrays, in the order the kernels take them."""
        return self.content_bounds, self.roles, self.part_messages, self.record_parts

    def raw_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """`raw` and the raw bounds, -1 for every message when there are none."""
        if self.raw_bounds is None:
            return self.raw, np.full(len(self.content_bounds), -1, dtype=np.int64)
        return self.raw, self.raw_bounds


def record_parts(record: SFTRecord | PrefRecord) -> list[list[Message]]:
    if isinstance(record, SFTRecord):
        return [record.messages]
    return [record.prompt, record.chosen, record.rejected]


def offsets(sizes: list[int]) -> np.ndarray:
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
    part_messages = offsets(part_sizes)
    # A content starts where its part text starts, plus the contents and "\n"s before it.
    steps = offsets([length + 1 for length in lengths])
    first_in_part = np.repeat(part_messages[:-1], part_sizes)
    starts = np.repeat(batch.bounds[:-1], part_sizes) + steps[:-1] - steps[first_in_part]
    bounds = np.empty(2 * len(lengths), dtype=np.int64)
    bounds[0::2] = starts
    bounds[1::2] = starts + np.asarray(lengths, dtype=np.int64)
    layout = MessageLayout(
        bounds, np.asarray(roles, dtype=np.uint8), part_messages, offsets(parts_per_record)
    )
    return batch, layout


def parts_of(texts: Texts, layout: MessageLayout, k: int) -> list[list[Message]]:
    """Record k's parts as message lists, read back from the batch's code points."""
    cps, bounds = texts.cps, layout.content_bounds
    return [
        [
            {
                "role": ROLES[layout.roles[m]],
                "content": cps[bounds[2 * m] : bounds[2 * m + 1]]
                .tobytes()
                .decode("utf-32-le", "surrogatepass"),
            }
            for m in range(layout.part_messages[p], layout.part_messages[p + 1])
        ]
        for p in range(layout.record_parts[k], layout.record_parts[k + 1])
    ]


@dataclass(frozen=True, slots=True)
class Columns:
    """A batch of converted records as code points and layout, with each record's position in
    its batch (stream order) and origin (file `file_names[file_of[k]]`, line). Records converted in Python
    (`of_records`) and records read by the compiled scanner (`sftscan`) meet here, so that
    everything after conversion (rules, dedup keys, output lines) has one implementation."""

    texts: Texts
    layout: MessageLayout
    positions: np.ndarray
    file_names: list[str]
    file_of: np.ndarray
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)

    @classmethod
    def of_records(cls, records: Sequence[SFTRecord | PrefRecord], positions: Sequence[int]) -> Columns:
        texts, layout = batch_texts(records)
        numbers: dict[str, int] = {}
        file_of = [numbers.setdefault(r.origin.file, len(numbers)) for r in records]
        return cls(
            texts,
            layout,
            np.asarray(positions, dtype=np.int64),
            list(numbers),
            np.array(file_of, dtype=np.int64),
            np.fromiter((r.origin.line for r in records), dtype=np.int64, count=len(records)),
        )

    def concat(self, other: Columns) -> Columns:
        """This batch's records, then `other`'s."""
        a, b = self.layout, other.layout
        shift = len(self.texts.cps)
        texts = Texts(
            np.concatenate([self.texts.cps, other.texts.cps]),
            np.concatenate([self.texts.bounds, other.texts.bounds[1:] + shift]),
        )
        (a_raw, a_raw_bounds), (b_raw, b_raw_bounds) = a.raw_arrays(), b.raw_arrays()
        raw = a_raw if not len(b_raw) else np.concatenate([a_raw, b_raw])
        layout = MessageLayout(
            np.concatenate([a.content_bounds, b.content_bounds + shift]),
            np.concatenate([a.roles, b.roles]),
            np.concatenate([a.part_messages, b.part_messages[1:] + a.part_messages[-1]]),
            np.concatenate([a.record_parts, b.record_parts[1:] + a.record_parts[-1]]),
            raw,
            np.concatenate([a_raw_bounds, np.where(b_raw_bounds >= 0, b_raw_bounds + len(a_raw), -1)]),
        )
        return Columns(
            texts,
            layout,
            np.concatenate([self.positions, other.positions]),
            self.file_names + other.file_names,
            np.concatenate([self.file_of, other.file_of + len(self.file_names)]),
            np.concatenate([self.lines, other.lines]),
        )
