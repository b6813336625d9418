"""prepare_data: raw files -> records -> filtered -> deduplicated -> split -> mixed -> JSONL.

Every record read ends in exactly one place: `<stage>_train.jsonl`, `<stage>_val.jsonl` or
`rejected.jsonl` (with its source, file, line, rule and detail); `report.json` checks
read = kept + rejected per stage. Outputs are staged and published atomically, manifest last.

Memory stays bounded whatever the input size: records stream through in batches; dedup keeps a
32-byte digest per kept record; kept training records are spilled to disk as finished JSON lines
and only their offset, language and length stay in memory until the sampler has ordered them.
"""

from __future__ import annotations

import logging
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from k12tune.atomic import atomic_write_bytes, publish, staging_dir
from k12tune.config.data import DataConfig
from k12tune.data.aliases import merged_aliases
from k12tune.data.converters import ConversionError, to_pref, to_sft
from k12tune.data.dedup import Deduplicator, dedup_parts, digest
from k12tune.data.filters import BatchView, DistinctPairFilter, FilterCounts, build_filters
from k12tune.data.mix import MixedBucketSampler
from k12tune.data.readers import RawItem, ReadStats, iter_source, local_dir
from k12tune.data.specs import SourceSpec
from k12tune.data.split import copies, is_val, record_id
from k12tune.manifest import remove_manifest, write_manifest
from k12tune.records import Origin, PrefRecord, SFTRecord

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("sft", "pref")
REJECTED = "rejected.jsonl"
REPORT = "report.json"
LENGTH_HIST_EDGES: tuple[int, ...] = (0, 64, 128, 256, 512, 1024, 2048, 4096)
LIBRARIES: tuple[str, ...] = ("numpy", "orjson", "pyarrow", "pydantic", "datasets")


def output_names(stage: str) -> tuple[str, str]:
    return f"{stage}_train.jsonl", f"{stage}_val.jsonl"


@dataclass(slots=True)
class Rejection:
    origin: Origin
    rule: str
    detail: str
    payload: Any


@dataclass(slots=True)
class Kept:
    record: SFTRecord | PrefRecord
    digest: bytes
    length: int  # code points: the conversation (SFT), prompt + longer answer (preference)


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


def _payload(record: SFTRecord | PrefRecord) -> dict[str, Any]:
    body = record.to_json()
    del body["id"], body["source"], body["lang"]
    return body


class BatchProcessor:
    """Convert, measure, filter and deduplicate batches of raw items for one stage. It keeps
    the rule counters and the dedup memory across batches; it writes nothing."""

    def __init__(self, stage: str, cfg: DataConfig) -> None:
        self.stage = stage
        self.convert: Callable[..., SFTRecord | PrefRecord] = to_sft if stage == "sft" else to_pref
        self.parts = ("conversation",) if stage == "sft" else ("prompt", "chosen", "rejected")
        self.aliases = merged_aliases(cfg.aliases)
        self.filters = build_filters(cfg.clean)
        self.pair_filter = DistinctPairFilter() if stage == "pref" else None
        self.dedup = Deduplicator()
        self.dedup_counts = FilterCounts()

    def process(self, items: list[RawItem]) -> tuple[list[Kept], list[Rejection]]:
        rejected: list[tuple[int, Rejection]] = []
        records: list[SFTRecord | PrefRecord] = []
        positions: list[int] = []
        for pos, item in enumerate(items):
            if item.error is not None:
                rejected.append((pos, Rejection(item.origin, item.error[0], item.error[1], item.value)))
                continue
            try:
                records.append(self.convert(item.value, item.origin, self.aliases))
            except ConversionError as exc:
                rejected.append((pos, Rejection(item.origin, exc.rule, exc.detail, item.value)))
                continue
            positions.append(pos)
        kept: list[Kept] = []
        if records:
            kept = self._judge(records, positions, rejected)
        rejected.sort(key=lambda pair: pair[0])
        return kept, [r for _, r in rejected]

    def _judge(
        self,
        records: list[SFTRecord | PrefRecord],
        positions: list[int],
        rejected: list[tuple[int, Rejection]],
    ) -> list[Kept]:
        n_parts = len(self.parts)
        view = BatchView.of([text for record in records for text in part_texts(record)], self.parts)
        for rule in self.filters:
            for failure in rule.apply(view):
                record = records[failure.index]
                rejection = Rejection(record.origin, rule.name, failure.detail, _payload(record))
                rejected.append((positions[failure.index], rejection))
        kept = []
        # SFT: the conversation; preference: prompt + the longer answer (one sequence's worth).
        lengths = view.stat("n_chars").reshape(len(records), n_parts)
        lengths = lengths[:, 0] + (lengths[:, 1:].max(axis=1) if n_parts > 1 else 0)
        alive = np.flatnonzero(view.alive).tolist()
        for i, forms in zip(alive, dedup_parts([records[i] for i in alive]), strict=True):
            record = records[i]
            if self.pair_filter is not None and not self.pair_filter.passes(forms[1], forms[2]):
                rejected.append(
                    (
                        positions[i],
                        Rejection(
                            record.origin, "pair_identical", "chosen equals rejected", _payload(record)
                        ),
                    )
                )
                continue
            key = digest(forms)
            self.dedup_counts.seen += 1
            if not self.dedup.first_seen(key):
                self.dedup_counts.dropped += 1
                detail = f"same normalised text as record {record_id(key)}"
                rejected.append(
                    (positions[i], Rejection(record.origin, "duplicate", detail, _payload(record)))
                )
                continue
            self.dedup_counts.kept += 1
            record.lang = view.lang[i]
            record.id = record_id(key)
            kept.append(Kept(record, key, int(lengths[i])))
        return kept


def batched(items: Iterable[RawItem], size: int) -> Iterator[list[RawItem]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class TrainSpill:
    """Finished training lines on disk, plus what the sampler needs to order them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = open(path, "wb")  # noqa: SIM115 - closed in write_in_order
        self.offset = 0
        self.offsets = array("q")
        self.sizes = array("q")
        self.is_zh = array("b")
        self.lengths = array("q")

    def add(self, line: bytes, lang: str, length: int, n_copies: int) -> None:
        self.handle.write(line)
        for _ in range(n_copies):
            self.offsets.append(self.offset)
            self.sizes.append(len(line))
            self.is_zh.append(lang == "zh")
            self.lengths.append(length)
        self.offset += len(line)

    def sampler(self, cfg: DataConfig) -> MixedBucketSampler:
        langs = np.where(np.frombuffer(self.is_zh, dtype=np.int8) == 1, "zh", "en")
        return MixedBucketSampler(
            langs,
            np.frombuffer(self.lengths, dtype=np.int64),
            zh_ratio=cfg.mix.zh_ratio,
            length_edges=cfg.mix.length_edges,
            seed=cfg.seed,
            when_exhausted=cfg.mix.when_exhausted,
        )

    def write_in_order(self, out_path: Path, order: np.ndarray) -> int:
        """Write the spilled lines in `order`; returns the number of lines written."""
        self.handle.close()
        with open(out_path, "wb") as out:
            if self.offset == 0:
                return 0
            # pread, not mmap: a mapped spill file would count as resident memory for its size.
            with open(self.path, "rb") as spill:
                fd, offsets, sizes = spill.fileno(), self.offsets, self.sizes
                for idx in order.tolist():
                    out.write(os.pread(fd, sizes[idx], offsets[idx]))
        self.path.unlink()
        return len(order)


@dataclass
class SourceTally:
    origin: str = ""
    lang_hint: str = ""
    read: int = 0
    kept: int = 0
    rejected: int = 0
    rules: Counter = field(default_factory=Counter)
    lang: Counter = field(default_factory=Counter)


@dataclass
class StageTally:
    sources: dict[str, SourceTally] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    train_records: int = 0
    val_records: int = 0
    train_lines: int = 0
    train_zh_lines: int = 0
    length_hist: list[int] = field(default_factory=lambda: [0] * len(LENGTH_HIST_EDGES))

    def count_kept(self, tally: SourceTally, kept: Kept) -> None:
        tally.kept += 1
        tally.lang[kept.record.lang] += 1
        self.length_hist[int(np.searchsorted(LENGTH_HIST_EDGES, kept.length, side="right")) - 1] += 1


def _describe_origin(spec: SourceSpec, raw_dir: str) -> str:
    folder = local_dir(spec, raw_dir)
    return f"local:{folder}" if folder.exists() else f"hub:{spec.hub_id}"


def run_stage(
    stage: str, specs: list[SourceSpec], cfg: DataConfig, staging: Path, rejects: Any, read_stats: ReadStats
) -> tuple[StageTally, BatchProcessor]:
    processor = BatchProcessor(stage, cfg)
    tally = StageTally()
    train_name, val_name = output_names(stage)
    spill = TrainSpill(staging / f".{stage}_spill.jsonl")
    with open(staging / val_name, "wb") as val_out:
        for spec in specs:
            if spec.weight == 0:
                log.info("%s: source %s has weight 0: not opened", stage, spec.name)
                tally.skipped.append(spec.name)
                continue
            source = tally.sources.setdefault(
                spec.name, SourceTally(origin=_describe_origin(spec, cfg.raw_dir), lang_hint=spec.lang_hint)
            )
            log.info("%s: reading %s from %s", stage, spec.name, source.origin)
            for items in batched(iter_source(spec, cfg.raw_dir, read_stats), cfg.batch_size):
                source.read += len(items)
                kept, rejected = processor.process(items)
                for rejection in rejected:
                    source.rejected += 1
                    source.rules[rejection.rule] += 1
                    rejects.write(_reject_line(stage, rejection))
                for item in kept:
                    line = orjson.dumps(item.record.to_json()) + b"\n"
                    if is_val(item.digest, cfg.val_fraction):
                        val_out.write(line)
                        tally.val_records += 1
                        tally.count_kept(source, item)
                        continue
                    n_copies = copies(item.digest, spec.weight)
                    if n_copies == 0:
                        source.rejected += 1
                        source.rules["weight"] += 1
                        detail = f"not drawn at source weight {spec.weight}"
                        rejects.write(
                            _reject_line(
                                stage, Rejection(item.record.origin, "weight", detail, _payload(item.record))
                            )
                        )
                        continue
                    spill.add(line, item.record.lang, item.length, n_copies)
                    tally.train_records += 1
                    tally.count_kept(source, item)
    sampler = spill.sampler(cfg)
    order = sampler.order()
    tally.train_lines = spill.write_in_order(staging / train_name, order)
    tally.train_zh_lines = int(sampler.is_zh[order].sum())
    return tally, processor


def _reject_line(stage: str, rejection: Rejection) -> bytes:
    row = {
        "stage": stage,
        "source": rejection.origin.source,
        "file": rejection.origin.file,
        "line": rejection.origin.line,
        "rule": rejection.rule,
        "detail": rejection.detail,
        "record": rejection.payload,
    }
    return orjson.dumps(row, default=repr, option=orjson.OPT_NON_STR_KEYS) + b"\n"


def stage_report(tally: StageTally, processor: BatchProcessor) -> dict[str, Any]:
    sources = {}
    for name, src in tally.sources.items():
        zh_share = src.lang["zh"] / src.kept if src.kept else None
        sources[name] = {
            "origin": src.origin,
            "lang_hint": src.lang_hint,
            "read": src.read,
            "kept": src.kept,
            "rejected": src.rejected,
            "rules": dict(sorted(src.rules.items())),
            "lang": dict(sorted(src.lang.items())),
            "kept_zh_share": zh_share,
        }
    read = sum(s.read for s in tally.sources.values())
    kept = tally.train_records + tally.val_records
    rejected = sum(s.rejected for s in tally.sources.values())
    rules: Counter = Counter()
    lang: Counter = Counter()
    for src in tally.sources.values():
        rules.update(src.rules)
        lang.update(src.lang)
    filters = {f.name: vars(f.counts) for f in processor.filters}
    if processor.pair_filter is not None:
        filters[processor.pair_filter.name] = vars(processor.pair_filter.counts)
    filters["duplicate"] = vars(processor.dedup_counts)
    labels = [f"[{a},{b})" for a, b in pairwise(LENGTH_HIST_EDGES)]
    labels.append(f"[{LENGTH_HIST_EDGES[-1]},inf)")
    return {
        "read": read,
        "kept": kept,
        "rejected": rejected,
        "accounted": read == kept + rejected,
        "train_records": tally.train_records,
        "val_records": tally.val_records,
        "train_lines": tally.train_lines,
        "train_zh_share": tally.train_zh_lines / tally.train_lines if tally.train_lines else None,
        "skipped_sources": tally.skipped,
        "rules": dict(sorted(rules.items())),
        "filters": filters,
        "lang": dict(sorted(lang.items())),
        "length_hist": dict(zip(labels, tally.length_hist, strict=True)),
        "sources": sources,
    }


def _warn_on_hints(stage: str, report: dict[str, Any]) -> None:
    for name, src in report["sources"].items():
        share = src["kept_zh_share"]
        if share is None:
            continue
        if (src["lang_hint"] == "zh" and share < 0.5) or (src["lang_hint"] == "en" and share > 0.5):
            log.warning(
                "%s: source %s is hinted %s but %.0f%% of its kept records are Chinese",
                stage,
                name,
                src["lang_hint"],
                100 * share,
            )


def prepare_data(cfg: DataConfig) -> dict[str, Any]:
    """Run the whole data stage; returns the report (also written to `report.json`)."""
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_manifest(out_dir)
    read_stats = ReadStats()
    report: dict[str, Any] = {}
    with staging_dir(out_dir) as staging:
        with open(staging / REJECTED, "wb") as rejects:
            for stage in STAGES:
                specs = cfg.sft_sources if stage == "sft" else cfg.pref_sources
                tally, processor = run_stage(stage, specs, cfg, staging, rejects, read_stats)
                report[stage] = stage_report(tally, processor)
                _warn_on_hints(stage, report[stage])
        report["inputs"] = {"blank_lines": read_stats.blank_lines, "empty_files": read_stats.empty_files}
        report_bytes = orjson.dumps(report, option=orjson.OPT_INDENT_2)
        atomic_write_bytes(staging / REPORT, report_bytes)
        names = [name for stage in STAGES for name in output_names(stage)] + [REJECTED, REPORT]
        publish(staging, out_dir, names)
    counts = {
        stage: {k: report[stage][k] for k in ("read", "kept", "rejected", "train_lines")} for stage in STAGES
    }
    write_manifest(
        out_dir,
        stage="prepare_data",
        config=cfg.model_dump(mode="json"),
        inputs=dict(sorted(read_stats.files.items())),
        outputs=names,
        counts=counts,
        libraries=LIBRARIES,
    )
    return report
