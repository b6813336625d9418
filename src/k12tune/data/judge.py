"""The per-batch work of prepare_data: raw items in, verdicts out.

A `Judge` parses, converts, measures and filters a batch, and computes each surviving record's
dedup digest, split and output line. It holds no state across batches, so batches can be judged
in any process: the pipeline sends `RawBatch`es to worker processes and gets `Verdicts` back in
order, and only what needs the whole stream (dedup, routing, counting) stays in the main process.
Both are plain lists, because pickling them is the cost of crossing a process boundary (about
1.7 us per record for dataclasses, 0.02 us for list elements).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from k12tune.config.data import DataConfig
from k12tune.data.aliases import merged_aliases
from k12tune.data.converters import ConversionError, to_pref, to_sft
from k12tune.data.dedup import dedup_parts, digest
from k12tune.data.filters import BatchView, DistinctPairFilter, FilterCounts, build_filters
from k12tune.data.readers import RawItem, parse_line
from k12tune.data.split import copies, is_val, record_id
from k12tune.data.unicode_tables import unicode_tables
from k12tune.records import Origin, PrefRecord, SFTRecord

STAGE_PARTS: dict[str, tuple[str, ...]] = {
    "sft": ("conversation",),
    "pref": ("prompt", "chosen", "rejected"),
}


@dataclass(slots=True)
class RawBatch:
    """Consecutive raw items of one source. `values[i]` is a parsed value, or, where
    `unparsed[i]`, a JSONL line still to be parsed (parsing is part of the parallel work)."""

    stage: str
    source: str
    weight: float
    files: list[str]
    lines: list[int]
    values: list[Any]
    errors: list[tuple[str, str] | None]
    unparsed: list[bool]

    @classmethod
    def of(cls, stage: str, source: str, weight: float, items: list[RawItem]) -> RawBatch:
        return cls(
            stage,
            source,
            weight,
            [item.origin.file for item in items],
            [item.origin.line for item in items],
            [item.value for item in items],
            [item.error for item in items],
            [item.unparsed for item in items],
        )

    def __len__(self) -> int:
        return len(self.values)

    def items(self) -> list[RawItem]:
        out = []
        for file, line, value, error, unparsed in zip(
            self.files, self.lines, self.values, self.errors, self.unparsed, strict=True
        ):
            origin = Origin(self.source, file, line)
            out.append(parse_line(value, origin) if unparsed else RawItem(value, origin, error))
        return out


@dataclass(slots=True)
class Verdicts:
    """A judged batch. `rejects` are (position in the batch, rule, line for rejected.jsonl) in
    position order. The other lists describe the records that passed every rule, in position
    order: they still face dedup, which needs the whole stream. `counts` are this batch's."""

    stage: str
    source: str
    weight: float
    read: int
    rejects: list[tuple[int, str, bytes]]
    positions: list[int]
    files: list[str]
    line_numbers: list[int]
    digests: list[bytes]
    lines: list[bytes]  # the finished output line, id included
    langs: list[str]
    lengths: list[int]  # code points: the conversation (SFT), prompt + longer answer (preference)
    val: list[bool]
    copies: list[int]  # training copies for the source weight (0 for val records)
    counts: dict[str, FilterCounts]


def payload(body: dict[str, Any]) -> dict[str, Any]:
    """An output record (`to_json()` form) as the rejects file shows it: without id, source
    and lang."""
    del body["id"], body["source"], body["lang"]
    return body


def reject_line(stage: str, origin: Origin, rule: str, detail: str, record: Any) -> bytes:
    row = {
        "stage": stage,
        "source": origin.source,
        "file": origin.file,
        "line": origin.line,
        "rule": rule,
        "detail": detail,
        "record": record,
    }
    return orjson.dumps(row, default=repr, option=orjson.OPT_NON_STR_KEYS) + b"\n"


def part_texts(record: SFTRecord | PrefRecord) -> list[str]:
    """The texts the cleaning rules judge, each its messages' contents joined with a newline:
    SFT [conversation] (every turn, system included), preference [prompt, chosen, rejected].

    SFT is judged whole on purpose: Chinese is dense, so a complete question such as
    "什么是API？" has 7 code points and a per-turn minimum of 8 would drop it, and a Chinese
    question with a code answer is Chinese teaching data although the answer alone is not."""
    if isinstance(record, SFTRecord):
        return ["\n".join(m["content"] for m in record.messages)]
    return [
        "\n".join(m["content"] for m in record.prompt),
        record.chosen[0]["content"],
        record.rejected[0]["content"],
    ]


class Judge:
    """Judges batches of one stage under one config."""

    def __init__(self, stage: str, cfg: DataConfig) -> None:
        self.stage = stage
        self.cfg = cfg
        self.convert: Callable[..., SFTRecord | PrefRecord] = to_sft if stage == "sft" else to_pref
        self.parts = STAGE_PARTS[stage]
        self.aliases = merged_aliases(cfg.aliases)

    def __call__(self, batch: RawBatch) -> Verdicts:
        rejects: list[tuple[int, str, bytes]] = []
        records: list[SFTRecord | PrefRecord] = []
        positions: list[int] = []
        for pos, item in enumerate(batch.items()):
            if item.error is not None:
                rule, detail = item.error
                rejects.append((pos, rule, reject_line(self.stage, item.origin, rule, detail, item.value)))
                continue
            try:
                records.append(self.convert(item.value, item.origin, self.aliases))
            except ConversionError as exc:
                line = reject_line(self.stage, item.origin, exc.rule, exc.detail, item.value)
                rejects.append((pos, exc.rule, line))
                continue
            positions.append(pos)
        filters = build_filters(self.cfg.clean)
        pair_filter = DistinctPairFilter() if self.stage == "pref" else None
        verdicts = Verdicts(
            batch.stage, batch.source, batch.weight, len(batch), rejects, *([] for _ in range(9)), {}
        )
        if records:
            self._judge(records, positions, filters, pair_filter, verdicts)
        rejects.sort(key=lambda reject: reject[0])
        verdicts.counts = {rule.name: rule.counts for rule in filters}
        if pair_filter is not None:
            verdicts.counts[pair_filter.name] = pair_filter.counts
        return verdicts

    def _judge(
        self,
        records: list[SFTRecord | PrefRecord],
        positions: list[int],
        filters: list,
        pair_filter: DistinctPairFilter | None,
        out: Verdicts,
    ) -> None:
        n_parts = len(self.parts)
        view = BatchView.of([text for record in records for text in part_texts(record)], self.parts)
        for rule in filters:
            for failure in rule.apply(view):
                record = records[failure.index]
                line = reject_line(
                    self.stage, record.origin, rule.name, failure.detail, payload(record.to_json())
                )
                out.rejects.append((positions[failure.index], rule.name, line))
        lengths = view.stat("n_chars").reshape(len(records), n_parts)
        lengths = lengths[:, 0] + (lengths[:, 1:].max(axis=1) if n_parts > 1 else 0)
        alive = np.flatnonzero(view.alive).tolist()
        for i, forms in zip(alive, dedup_parts([records[i] for i in alive]), strict=True):
            record = records[i]
            if pair_filter is not None and not pair_filter.passes(forms[1], forms[2]):
                detail = "chosen equals rejected"
                line = reject_line(
                    self.stage, record.origin, pair_filter.name, detail, payload(record.to_json())
                )
                out.rejects.append((positions[i], pair_filter.name, line))
                continue
            key = digest(forms)
            record.lang = view.lang[i]
            record.id = record_id(key)
            in_val = is_val(key, self.cfg.val_fraction)
            out.positions.append(positions[i])
            out.files.append(record.origin.file)
            out.line_numbers.append(record.origin.line)
            out.digests.append(key)
            out.lines.append(orjson.dumps(record.to_json()) + b"\n")
            out.langs.append(record.lang)
            out.lengths.append(int(lengths[i]))
            out.val.append(in_val)
            out.copies.append(0 if in_val else copies(key, out.weight))


# Worker processes build one judge per stage at start-up (see `start_worker`).
_JUDGES: dict[str, Judge] = {}


def start_worker(cfg: DataConfig) -> None:
    """Process initialiser: the judges and the Unicode tables, built once per process."""
    unicode_tables()
    for stage in STAGE_PARTS:
        _JUDGES[stage] = Judge(stage, cfg)


def judge_batch(batch: RawBatch) -> Verdicts:
    return _JUDGES[batch.stage](batch)
