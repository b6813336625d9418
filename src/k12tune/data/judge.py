"""The per-batch work of prepare_data: raw items in, verdicts out.

A `Judge` parses, converts, measures and filters a batch, and computes each surviving record's
dedup digest, split and output line. It holds no state across batches, so batches can be judged
in any process: the pipeline sends `RawBatch`es to worker processes and gets `Verdicts` back in
order, and only what needs the whole stream (dedup, routing, counting) stays in the main process.
Both cross a process boundary, so they are built to pickle cheaply: a JSONL batch is a byte
range of its file (the worker reads and parses it), and the verdicts on surviving records are
a few arrays and blobs (digests, reject lines), not objects per record; their output lines
stay on disk (`Verdicts.spill_lines`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from k12tune.data.aliases import merged_aliases
from k12tune.data.batchtext import ROLE_NAME_BOUNDS, ROLE_NAMES, Columns, MessageLayout, offsets
from k12tune.data.converters import ConversionError, to_pref, to_sft
from k12tune.data.dedup import DIGEST_SIZE, DedupForms
from k12tune.data.filters import (
    BatchView,
    DistinctPairFilter,
    Failures,
    FilterCounts,
    TextFilter,
    build_filters,
)
from k12tune.data.normalize import clean_text
from k12tune.data.readers import JsonlChunk, RawItem, chunk_bytes, parse_line, read_chunk
from k12tune.data.rejects import RejectLines, reject_head, reject_line, reject_middle
from k12tune.data.split import ID_BYTES, copies, is_val
from k12tune.data.textstats import Texts
from k12tune.data.unicode_tables import unicode_tables
from k12tune.fileio import write_all
from k12tune.memory import keep_freed_memory
from k12tune.records import Origin, PrefRecord, SFTRecord

if TYPE_CHECKING:
    from k12tune.config.data import DataConfig

STAGE_PARTS: dict[str, tuple[str, ...]] = {
    "sft": ("conversation",),
    "pref": ("prompt", "chosen", "rejected"),
}


@dataclass(slots=True)
class RawBatch:
    """Consecutive raw items of one source: a `chunk` of a JSONL file, read and parsed by the
    process that judges it, or parsed items (JSON arrays, Parquet, hub) as plain lists, which
    pickle fast (about 1.7 us per record for dataclasses, 0.02 us for list elements)."""

    stage: str
    source: str
    weight: float
    chunk: JsonlChunk | None = None
    files: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    errors: list[tuple[str, str] | None] = field(default_factory=list)
    spill_dir: str | None = None  # where `judge_batch` spills the output lines (see `Verdicts`)

    @classmethod
    def of(cls, stage: str, source: str, weight: float, items: list[RawItem]) -> RawBatch:
        return cls(
            stage,
            source,
            weight,
            None,
            [item.origin.file for item in items],
            [item.origin.line for item in items],
            [item.value for item in items],
            [item.error for item in items],
        )

    def items(self) -> tuple[list[RawItem], int]:
        """The raw items, and how many blank lines were skipped among them."""
        if self.chunk is not None:
            return read_chunk(self.chunk, self.source)
        return [
            RawItem(value, Origin(self.source, file, line), error)
            for file, line, value, error in zip(self.files, self.lines, self.values, self.errors, strict=True)
        ], 0


@dataclass(slots=True)
class Verdicts:
    """A judged batch. `rejects` are its reject lines, `rejected_rules` how many of them each
    rule made. The other fields describe the records that passed every rule, in position
    order (they still face dedup, which needs the whole stream): record k sits at `positions[k]`
    of the batch, from line `line_numbers[k]` of file `file_names[file_of[k]]`; its output line
    (id included) ends at `line_ends[k]` of `lines` (it starts where line k-1 ends), or with
    `spill`, that many bytes further than `spill_offset` in the file `spill` (see
    `spill_bounds`); its digest is the k-th 32 bytes of `digests`. `counts`
    are this batch's."""

    stage: str
    source: str
    weight: float
    read: int
    blank_lines: int
    chunk: JsonlChunk | None = None  # the batch's, if it was one
    rejects: RejectLines = field(default_factory=RejectLines)
    rejected_rules: dict[str, int] = field(default_factory=dict)
    counts: dict[str, FilterCounts] = field(default_factory=dict)
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    file_names: list[str] = field(default_factory=list)
    file_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    line_numbers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    digests: bytes = b""
    lines: bytes = b""
    line_ends: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    is_zh: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # code points: the conversation (SFT), prompt + longer answer (preference)
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    val: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # training copies for the source weight (0 for val records)
    copies: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    spill: str = ""
    spill_offset: int = 0

    def origin(self, k: int) -> Origin:
        return Origin(self.source, self.file_names[self.file_of[k]], int(self.line_numbers[k]))

    def digest(self, k: int) -> bytes:
        return self.digests[k * DIGEST_SIZE : (k + 1) * DIGEST_SIZE]

    def spill_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each output line lies in the spill file: its offset and its size in bytes."""
        sizes = np.diff(self.line_ends, prepend=0)
        return self.spill_offset + self.line_ends - sizes, sizes

    def spill_lines(self, folder: str) -> None:
        """Move `lines` to the end of this process's spill file in `folder`: the main process
        reads back only the lines it keeps, once, instead of receiving every line through a
        pipe (pickled, copied twice by the kernel, unpickled)."""
        self.spill = os.path.join(folder, f".lines-{os.getpid()}")
        fd = os.open(self.spill, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.spill_offset = os.lseek(fd, 0, os.SEEK_END)
            write_all(fd, self.lines)
        finally:
            os.close(fd)
        self.lines = b""


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_ids(digests: bytes) -> np.ndarray:
    """`split.record_id` of every 32-byte digest, as an (n, 2 * ID_BYTES) array of ASCII hex
    digits."""
    head = np.frombuffer(digests, dtype=np.uint8).reshape(-1, DIGEST_SIZE)[:, :ID_BYTES]
    return np.stack([_HEX_DIGITS[head >> 4], _HEX_DIGITS[head & 0xF]], axis=2).reshape(-1, 2 * ID_BYTES)


def packed(pieces: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """`pieces` as the compiled writers take them: one byte array, and bounds (piece i is
    `data[bounds[i]:bounds[i+1]]`)."""
    data = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    return data, np.cumsum([0, *map(len, pieces)]).astype(np.int64)


@dataclass(frozen=True)
class JudgeSettings:
    """What judging takes from the config, as plain values. The settings go to the worker
    processes, which then never import pydantic and the config package; nor does the fork
    server that starts them (`data.warmup`), whose start the whole stage waits for: the
    imports took 0.07 of its 0.45 s."""

    rules: tuple[TextFilter, ...]  # the cleaning rules in order (`filters.build_filters`)
    aliases: dict[str, tuple[str, ...]]  # the raw field names per canonical field
    val_fraction: float

    @classmethod
    def of(cls, cfg: DataConfig) -> JudgeSettings:
        return cls(tuple(build_filters(cfg.clean)), merged_aliases(cfg.aliases), cfg.val_fraction)


class Judge:
    """Judges batches of one stage under one config."""

    def __init__(self, stage: str, settings: JudgeSettings) -> None:
        self.stage = stage
        self.settings = settings
        self.convert: Callable[..., SFTRecord | PrefRecord] = to_sft if stage == "sft" else to_pref
        self.parts = STAGE_PARTS[stage]
        self.aliases = settings.aliases
        self.scanner = None
        if stage == "sft":  # numba is imported where a kernel runs (see `kernels`)
            from k12tune.data.sftscan import SftScanner

            self.scanner = SftScanner.of(self.aliases)
        # The keys of the record's parts in its JSON, in order (see `kernels._put_body`).
        names = ("messages",) if stage == "sft" else ("prompt", "chosen", "rejected")
        self.part_keys, self.part_key_bounds = packed(
            [(b"," if k else b"") + orjson.dumps(name) + b":" for k, name in enumerate(names)]
        )

    def _scan(self, chunk: JsonlChunk, source: str) -> tuple[Columns, list[tuple[int, RawItem]], int, int]:
        """A JSONL chunk through the compiled scanner: the records it reads (as columns), the
        other lines parsed for the Python path (with their positions), the blank lines, and
        the number of records (non-blank lines)."""
        from k12tune.data import sftscan

        assert self.scanner is not None
        data = chunk_bytes(chunk)
        raw = np.frombuffer(data, dtype=np.uint8)
        line_ends, kinds, cps, text_bounds, counts, roles, content_bounds, raw_bounds = self.scanner.scan(
            raw, unicode_tables().space
        )
        is_record = (kinds == sftscan.FAST) | (kinds == sftscan.SLOW)
        positions = np.cumsum(is_record) - 1
        fast = np.flatnonzero(kinds == sftscan.FAST)
        parts = np.arange(len(fast) + 1, dtype=np.int64)
        layout = MessageLayout(content_bounds, roles, offsets(counts), parts, raw, raw_bounds)
        columns = Columns(
            Texts(cps, text_bounds),
            layout,
            positions[fast],
            [chunk.path],
            np.zeros(len(fast), dtype=np.int64),
            fast + chunk.first_line,
        )
        line_starts = np.concatenate([[0], line_ends[:-1] + 1]).tolist()
        slow = []
        for k in np.flatnonzero(kinds == sftscan.SLOW).tolist():
            origin = Origin(source, chunk.path, chunk.first_line + k)
            slow.append((int(positions[k]), parse_line(data[line_starts[k] : line_ends[k]], origin)))
        return columns, slow, int(np.count_nonzero(kinds == sftscan.BLANK)), int(is_record.sum())

    def __call__(self, batch: RawBatch) -> Verdicts:
        scanned: Columns | None = None
        if batch.chunk is not None and self.scanner is not None:
            scanned, items, blank_lines, read = self._scan(batch.chunk, batch.source)
        else:
            raw, blank_lines = batch.items()
            items, read = list(enumerate(raw)), len(raw)
        rejects: list[tuple[int, bytes]] = []  # (position, line) of the items that fail to convert
        rejected_rules: Counter[str] = Counter()
        records: list[SFTRecord | PrefRecord] = []
        positions: list[int] = []
        for pos, item in items:
            if item.error is not None:
                rule, detail = item.error
                rejects.append((pos, reject_line(self.stage, item.origin, rule, detail, item.value)))
                rejected_rules[rule] += 1
                continue
            try:
                clean = str.strip if item.plain else clean_text
                records.append(self.convert(item.value, item.origin, self.aliases, clean))
            except ConversionError as exc:
                rejects.append((pos, reject_line(self.stage, item.origin, exc.rule, exc.detail, item.value)))
                rejected_rules[exc.rule] += 1
                continue
            positions.append(pos)
        columns = Columns.of_records(records, positions)
        if scanned is not None:
            columns = scanned.concat(columns) if records else scanned
        filters = [rule.fresh() for rule in self.settings.rules]
        pair_filter = DistinctPairFilter() if self.stage == "pref" else None
        verdicts = Verdicts(batch.stage, batch.source, batch.weight, read, blank_lines, batch.chunk)
        if len(columns):
            self._judge(columns, filters, pair_filter, verdicts)
        verdicts.rejects = verdicts.rejects.with_lines(rejects)
        verdicts.rejected_rules = dict(rejected_rules + Counter(verdicts.rejected_rules))
        verdicts.counts = {rule.name: rule.counts for rule in filters}
        if pair_filter is not None:
            verdicts.counts[pair_filter.name] = pair_filter.counts
        return verdicts

    def _judge(
        self,
        columns: Columns,
        filters: list[TextFilter],
        pair_filter: DistinctPairFilter | None,
        out: Verdicts,
    ) -> None:
        from k12tune.data import kernels

        n_parts = len(self.parts)
        view = BatchView.of(columns.texts, self.parts)
        failures = [(rule.name, rule.apply(view)) for rule in filters]
        lengths = view.stat("n_chars").reshape(len(columns), n_parts)
        lengths = lengths[:, 0] + (lengths[:, 1:].max(axis=1) if n_parts > 1 else 0)
        forms = DedupForms(columns.texts, columns.layout, view.alive)
        passed = np.ones(len(forms.records), dtype=bool)
        if pair_filter is not None:
            identical = []
            for j, k in enumerate(forms.records.tolist()):
                parts = forms.parts(j)
                if not pair_filter.passes(parts[1], parts[2]):
                    passed[j] = False
                    identical.append(k)
            indices = np.array(identical, dtype=np.int64)
            same = Failures(indices, np.zeros(len(indices), dtype=np.int64), ["chosen equals rejected"])
            failures.append((pair_filter.name, same))
        picked = np.flatnonzero(passed)
        picked = picked[np.argsort(columns.positions[forms.records[picked]], kind="stable")]
        survivors = forms.records[picked]
        layout, cps = columns.layout, columns.texts.cps
        capacity = kernels.json_capacity(cps, layout.roles, layout.part_messages, ROLE_NAMES)
        out.rejects = self._reject_lines(out.source, columns, failures, capacity)
        out.rejected_rules = {name: len(failed) for name, failed in failures if len(failed)}
        out.digests = forms.digests()[picked].tobytes()
        is_zh = view.is_zh[survivors]
        source = np.frombuffer(orjson.dumps(out.source), dtype=np.uint8)
        lines, out.line_ends = kernels.json_lines(
            cps,
            *layout.arrays(),
            *layout.raw_arrays(),
            survivors,
            hex_ids(out.digests),
            is_zh,
            source,
            self.part_keys,
            self.part_key_bounds,
            ROLE_NAMES,
            ROLE_NAME_BOUNDS,
            capacity,
        )
        out.lines = lines.tobytes()
        out.positions = columns.positions[survivors]
        out.file_names = columns.file_names
        out.file_of = columns.file_of[survivors]
        out.line_numbers = columns.lines[survivors]
        out.is_zh = is_zh
        out.lengths = lengths[survivors]
        out.val = is_val(out.digests, self.settings.val_fraction)
        out.copies = np.where(out.val, 0, copies(out.digests, out.weight))

    def _reject_lines(
        self, source: str, columns: Columns, failures: list[tuple[str, Failures]], capacity: int
    ) -> RejectLines:
        """The reject lines of the records that `failures` (rule name, failures) name, in
        position order, put together by `kernels.reject_lines` from the heads of the batch's
        files and the middles of the rules' details."""
        from k12tune.data import kernels

        records = np.concatenate([failed.indices for _, failed in failures])
        if not len(records):
            return RejectLines()
        middles: list[bytes] = []
        middle_of = []
        for name, failed in failures:
            middle_of.append(failed.detail_of + len(middles))
            middles += [reject_middle(name, detail) for detail in failed.details]
        order = np.argsort(columns.positions[records], kind="stable")
        records = records[order]
        heads, head_bounds = packed([reject_head(self.stage, source, name) for name in columns.file_names])
        head_of = columns.file_of[records]
        middle_blob, middle_bounds = packed(middles)
        middle_of_records = np.concatenate(middle_of)[order]
        layout = columns.layout
        capacity += int(np.diff(head_bounds)[head_of].sum() + np.diff(middle_bounds)[middle_of_records].sum())
        blob, ends = kernels.reject_lines(
            columns.texts.cps,
            *layout.arrays(),
            *layout.raw_arrays(),
            records,
            heads,
            head_bounds,
            head_of,
            columns.lines[records],
            middle_blob,
            middle_bounds,
            middle_of_records,
            self.part_keys,
            self.part_key_bounds,
            ROLE_NAMES,
            ROLE_NAME_BOUNDS,
            capacity,
        )
        return RejectLines(blob.tobytes(), ends, columns.positions[records])


# Worker processes build one judge per stage at start-up (see `start_worker`).
_JUDGES: dict[str, Judge] = {}


def start_worker(settings: JudgeSettings) -> None:
    """Process initialiser: the judges and the Unicode tables, built once per process, and
    the allocator told to keep the memory that every batch frees (see `memory`)."""
    keep_freed_memory()
    unicode_tables()
    for stage in STAGE_PARTS:
        _JUDGES[stage] = Judge(stage, settings)


def judge_batch(batch: RawBatch) -> Verdicts:
    verdicts = _JUDGES[batch.stage](batch)
    if batch.spill_dir is not None:
        verdicts.spill_lines(batch.spill_dir)
    return verdicts
