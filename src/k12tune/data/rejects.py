"""rejected.jsonl: its lines, and their order.

A line is `orjson.dumps` of {stage, source, file, line, rule, detail, record}. Most rejects of a
batch are made by a compiled loop (`kernels.reject_lines`) from pieces that they share: a head
per (stage, source, file) and a middle per (rule, detail). A batch's rejects travel as one
`RejectLines` blob with arrays, not as an object per line: about a third of a million lines
per million records.
"""

from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from k12tune.data.batchtext import ID_KEY, LANG_KEYS, SOURCE_KEY
from k12tune.data.split import ID_BYTES
from k12tune.fileio import ChunkedFile
from k12tune.records import Origin

# What comes before the body in an output line (see `batchtext.ID_KEY`; both language keys
# are as long), but the source.
_HEAD = len(ID_KEY) + 2 * ID_BYTES + len(SOURCE_KEY) + len(LANG_KEYS[0])


def record_json(line: bytes, source: str) -> bytes:
    """The rejects file's form of a record (its output line without id, source and lang) cut
    out of `line`, its output line of source `source`: the line is
    `{"id":ID,"source":SOURCE,"lang":LANG,BODY}` and a line end (`kernels.json_lines`, which
    writes what orjson writes), so this is `{BODY}`, which orjson would give for the record
    parsed without those three fields, without the parse (10 us per duplicate)."""
    return b"{" + line[_HEAD + len(orjson.dumps(source)) : -1]


def reject_line(stage: str, origin: Origin, rule: str, detail: str, record: Any) -> bytes:
    return reject_line_of_json(
        stage, origin, rule, detail, orjson.dumps(record, default=repr, option=orjson.OPT_NON_STR_KEYS)
    )


def reject_line_of_json(stage: str, origin: Origin, rule: str, detail: str, record_json: bytes) -> bytes:
    """The line for a record given as its JSON bytes (the "record" value)."""
    return (
        reject_head(stage, origin.source, origin.file)
        + orjson.dumps(origin.line)
        + reject_middle(rule, detail)
        + record_json
        + b"}\n"
    )


@functools.lru_cache(maxsize=256)
def reject_head(stage: str, source: str, file: str) -> bytes:
    """A line's JSON up to the line number: `{"stage":...,"source":...,"file":...,"line":`."""
    return orjson.dumps({"stage": stage, "source": source, "file": file})[: -len(b"}")] + b',"line":'


@functools.lru_cache(maxsize=4096)
def reject_middle(rule: str, detail: str) -> bytes:
    """A line's JSON from the line number to the record: `,"rule":...,"detail":...,"record":`."""
    return b"," + orjson.dumps({"rule": rule, "detail": detail, "record": None})[len(b"{") : -len(b"null}")]


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(slots=True)
class RejectLines:
    """Reject lines in position order: line i is `blob[ends[i-1]:ends[i]]` (from 0 for i = 0),
    the reject of the record at `positions[i]` of its batch."""

    blob: bytes = b""
    ends: np.ndarray = field(default_factory=_empty)
    positions: np.ndarray = field(default_factory=_empty)

    def __len__(self) -> int:
        return len(self.ends)

    def items(self) -> list[tuple[int, bytes]]:
        """(position, line) of every line."""
        starts = [0, *self.ends.tolist()]
        view = memoryview(self.blob)
        return [
            (pos, view[starts[i] : starts[i + 1]].tobytes()) for i, pos in enumerate(self.positions.tolist())
        ]

    def with_lines(self, extra: list[tuple[int, bytes]]) -> RejectLines:
        """These lines and `extra` (position, line) ones, for other positions, in position
        order: one join of a slice of the blob per extra line."""
        if not extra:
            return self
        extra = sorted(extra, key=lambda item: item[0])
        positions = np.array([pos for pos, _ in extra], dtype=np.int64)
        sizes = np.array([len(line) for _, line in extra], dtype=np.int64)
        at = np.searchsorted(self.positions, positions)
        cuts = np.concatenate([np.zeros(1, dtype=np.int64), self.ends])[at].tolist()
        view = memoryview(self.blob)
        pieces: list[bytes | memoryview] = []
        done = 0
        for cut, (_, line) in zip(cuts, extra, strict=True):
            pieces += [view[done:cut], line]
            done = cut
        pieces.append(view[done:])
        merged_sizes = np.insert(np.diff(self.ends, prepend=0), at, sizes)
        return RejectLines(
            b"".join(pieces), np.cumsum(merged_sizes), np.insert(self.positions, at, positions)
        )


class RejectsWriter:
    """rejected.jsonl, in stream order. A record dropped for its source weight is written after
    the other rejects of its batch of `batch_size` records of the source: the order of the
    pipeline that judged one batch at a time, kept so that the file stays the same whatever
    the unit of parallel work (JSONL files travel as byte ranges, not batches)."""

    def __init__(self, handle: ChunkedFile, batch_size: int) -> None:
        self.handle, self.batch_size = handle, batch_size
        self.source: tuple[str, str] | None = None
        self.first = 0  # index in its source's stream of the next record to arrive
        self.held: list[bytes] = []  # weight rejects of the batch that ends at `held_until`
        self.held_until = 0

    def add(
        self, source: tuple[str, str], read: int, rejects: RejectLines, held: list[tuple[int, bytes]]
    ) -> None:
        """The rejects among the next `read` records of `source`: `rejects` and `held`
        (position, line; weight rejects, in position order)."""
        if source != self.source:
            self.flush()
            self.source, self.first = source, 0
        if not held and not self.held:  # the common case (source weight >= 1): nothing to order
            self.first += read
            self.handle.write(rejects.blob)
            return
        out: list[bytes] = []
        written = ((self.first + pos, False, line) for pos, line in rejects.items())
        weighed = ((self.first + pos, True, line) for pos, line in held)
        for index, is_held, line in heapq.merge(written, weighed):
            if self.held and index >= self.held_until:
                out += self.held
                self.held = []
            if not is_held:
                out.append(line)
                continue
            if not self.held:
                self.held_until = (index // self.batch_size + 1) * self.batch_size
            self.held.append(line)
        self.first += read
        self.handle.write(b"".join(out))

    def flush(self) -> None:
        self.handle.write(b"".join(self.held))
        self.held = []
