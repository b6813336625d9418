"""prepare_data: raw files -> records -> filtered -> deduplicated -> split -> mixed -> JSONL.

Every record read ends in exactly one place: `<stage>_train.jsonl`, `<stage>_val.jsonl` or
`rejected.jsonl` (with its source, file, line, rule and detail); `report.json` checks
read = kept + rejected per stage. Outputs are staged and published atomically, manifest last.

Memory stays bounded whatever the input size: records stream through in batches; dedup keeps a
32-byte digest per kept record; the judging processes spill every surviving record to disk as
a finished JSON line (so that lines never travel back through a pipe), and only the offset,
language and length of each training line stay in memory until the sampler has ordered them.
"""

from __future__ import annotations

import logging
import os
from array import array
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from k12tune.atomic import atomic_write_bytes, publish, staging_dir
from k12tune.config.data import DataConfig
from k12tune.data.dedup import Deduplicator
from k12tune.data.filters import DistinctPairFilter, FilterCounts, build_filters
from k12tune.data.judge import JudgeSettings, RawBatch, Verdicts, judge_batch, start_worker
from k12tune.data.linecopy import LineWindow, copy_window
from k12tune.data.mix import MixedBucketSampler
from k12tune.data.readers import JsonlChunk, JudgedProgress, ReadStats, find_data_files, iter_work, local_dir
from k12tune.data.rejects import RejectsWriter, record_json, reject_line_of_json
from k12tune.data.specs import SourceSpec
from k12tune.data.split import record_id
from k12tune.digest import bytes_digest, hasher
from k12tune.fileio import ChunkedFile
from k12tune.manifest import remove_manifest, write_manifest
from k12tune.parallel import WorkerPool, available_cpus, collection_paused, read_ahead

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("sft", "pref")
REJECTED = "rejected.jsonl"
REPORT = "report.json"
LENGTH_HIST_EDGES: tuple[int, ...] = (0, 64, 128, 256, 512, 1024, 2048, 4096)
LIBRARIES: tuple[str, ...] = ("numpy", "orjson", "pyarrow", "pydantic", "datasets", "blake3")
# Below this much local input, starting worker processes costs more than it saves.
PARALLEL_MIN_BYTES = 64 << 20
# The training file is copied from the spill files in windows of this many lines (see `linecopy`).
_WINDOW = 16384
# How far the input is read (hashed, cut into chunks) ahead of the judging, in bytes of JSONL
# (only the chunks' bounds are kept: their bytes are read again where they are judged, from
# the page cache if it still holds them). A batch of parsed records weighs a quarter of this,
# so that at most 4 such batches wait in the queue, besides the one being read.
_READ_AHEAD = 1 << 30
# What the fork server of the judging processes imports before it forks them (in this order;
# see `fork_server`, `warmup`).
FORK_SERVER_PRELOAD: tuple[str, ...] = ("k12tune.data.fork_server", "k12tune.data.warmup")


def output_names(stage: str) -> tuple[str, str]:
    return f"{stage}_train.jsonl", f"{stage}_val.jsonl"


class LineFiles:
    """The files into which the judging processes spill finished output lines (one file per
    process, see `judge.judge_batch`), open here for reading by offset. They live in the
    staging folder, which goes with them; `close` only releases the descriptors."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.fds: list[int] = []
        self._numbers: dict[str, int] = {}

    def number(self, path: str) -> int:
        if path not in self._numbers:
            self._numbers[path] = len(self.paths)
            self.paths.append(path)
            self.fds.append(os.open(path, os.O_RDONLY))
        return self._numbers[path]

    def read(self, file_no: int, offset: int, size: int) -> bytes:
        return os.pread(self.fds[file_no], size, offset)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def remove(self, pool: WorkerPool) -> None:
        """Close and delete the files, by the pool's workers side by side: deleting a file
        frees its pages in the page cache (about 0.1 s per GB), which otherwise the main
        process did alone at the end of the stage, with the other CPUs idle."""
        self.close()
        for _ in pool.map(os.unlink, self.paths):
            pass


class TrainSpill:
    """Where each training line lies in the spill files, and what the sampler needs to order
    the lines. The lines themselves stay on disk until they are written in order."""

    def __init__(self, files: LineFiles) -> None:
        self.files = files
        self.file_nos = array("h")
        self.offsets = array("q")
        self.sizes = array("q")
        self.is_zh = array("b")
        self.lengths = array("q")

    def add(
        self, v: Verdicts, file_no: int, train: np.ndarray, offsets: np.ndarray, sizes: np.ndarray
    ) -> None:
        """Add `v`'s survivors `train` (indices), whose lines are `sizes` bytes at `offsets` of
        spill file `file_no`; survivor k enters the stream `v.copies[k]` times."""
        n_copies = v.copies[train]
        self.file_nos.frombytes(np.full(int(n_copies.sum()), file_no, dtype=np.int16).tobytes())
        self.offsets.frombytes(np.repeat(offsets[train], n_copies).tobytes())
        self.sizes.frombytes(np.repeat(sizes[train], n_copies).tobytes())
        self.is_zh.frombytes(np.repeat(v.is_zh[train], n_copies).astype(np.int8).tobytes())
        self.lengths.frombytes(np.repeat(v.lengths[train], n_copies).astype(np.int64).tobytes())

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

    def write_in_order(self, out_path: Path, order: np.ndarray, pool: WorkerPool) -> str:
        """Write the spilled lines in `order` (windows of `_WINDOW` lines copied by the
        workers, see `linecopy`); returns the file's digest (hex), hashed here window by
        window as the windows complete, in order, while the workers copy the next ones.

        pread, not mmap: a mapped spill file would count as resident memory for its size."""
        sizes = np.frombuffer(self.sizes, dtype=np.int64)[order]
        ends = np.cumsum(sizes)
        file_nos = np.frombuffer(self.file_nos, dtype=np.int16)[order]
        offsets = np.frombuffer(self.offsets, dtype=np.int64)[order]
        out_path.touch()
        windows = (
            LineWindow(
                self.files.paths,
                file_nos[start : start + _WINDOW],
                offsets[start : start + _WINDOW],
                sizes[start : start + _WINDOW],
                str(out_path),
                int(ends[start] - sizes[start]),
            )
            for start in range(0, len(order), _WINDOW)
        )
        file_hasher = hasher()
        fd = os.open(out_path, os.O_RDONLY)
        try:
            done = 0
            for size in pool.map(copy_window, windows):
                file_hasher.update(os.pread(fd, size, done))
                done += size
        finally:
            os.close(fd)
        return file_hasher.hexdigest()


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
    rule_counts: dict[str, FilterCounts] = field(default_factory=dict)

    def count_kept(self, source: SourceTally, is_zh: np.ndarray, lengths: np.ndarray) -> None:
        source.kept += len(is_zh)
        n_zh = int(is_zh.sum())
        for lang, n in (("zh", n_zh), ("en", len(is_zh) - n_zh)):
            if n:
                source.lang[lang] += n
        bins = np.searchsorted(LENGTH_HIST_EDGES, lengths, side="right") - 1
        for b, n in enumerate(np.bincount(bins, minlength=len(LENGTH_HIST_EDGES)).tolist()):
            self.length_hist[b] += n


def _describe_origin(spec: SourceSpec, raw_dir: str) -> str:
    folder = local_dir(spec, raw_dir)
    return f"local:{folder}" if folder.exists() else f"hub:{spec.hub_id}"


def _add_counts(total: FilterCounts, part: FilterCounts) -> None:
    for name, value in vars(part).items():
        setattr(total, name, getattr(total, name) + value)


class StageWriter:
    """The main-process side of one stage: dedup across the whole stream (first occurrence
    wins), routing of each record to val, train (spilled for the sampler) or the rejects
    file, and all counting. Judged batches must arrive in stream order."""

    def __init__(
        self, stage: str, cfg: DataConfig, staging: Path, rejects: RejectsWriter, files: LineFiles
    ) -> None:
        self.stage, self.cfg, self.staging, self.rejects, self.files = stage, cfg, staging, rejects, files
        self.tally = StageTally()
        rule_names = [rule.name for rule in build_filters(cfg.clean)]
        if stage == "pref":
            rule_names.append(DistinctPairFilter.name)
        self.tally.rule_counts = {name: FilterCounts() for name in [*rule_names, "duplicate"]}
        self.dedup = Deduplicator()
        train_name, val_name = output_names(stage)
        self.train_path = staging / train_name
        self.val_out = ChunkedFile(staging / val_name, digest=True)
        self.spill = TrainSpill(files)

    def start_source(self, spec: SourceSpec) -> None:
        origin = _describe_origin(spec, self.cfg.raw_dir)
        self.tally.sources.setdefault(spec.name, SourceTally(origin=origin, lang_hint=spec.lang_hint))
        log.info("%s: reading %s from %s", self.stage, spec.name, origin)

    def skip_source(self, spec: SourceSpec) -> None:
        log.info("%s: source %s has weight 0: not opened", self.stage, spec.name)
        self.tally.skipped.append(spec.name)

    def _late_reject(self, v: Verdicts, line: bytes, k: int, rule: str, detail: str) -> bytes:
        """A rejection decided here, after judging: rebuilt from the record's output line."""
        return reject_line_of_json(self.stage, v.origin(k), rule, detail, record_json(line, v.source))

    def add(self, v: Verdicts) -> None:
        source = self.tally.sources[v.source]
        file_no = self.files.number(v.spill)
        line_offsets, line_sizes = v.spill_bounds()

        def line(k: int) -> bytes:
            return self.files.read(file_no, int(line_offsets[k]), int(line_sizes[k]))

        source.read += v.read
        for name, counts in v.counts.items():
            _add_counts(self.tally.rule_counts[name], counts)
        fresh = self.dedup.first_seen(v.digests)
        duplicates = self.tally.rule_counts["duplicate"]
        duplicates.seen += len(fresh)
        duplicates.kept += int(fresh.sum())
        duplicates.dropped += len(fresh) - int(fresh.sum())
        duplicate = np.flatnonzero(~fresh).tolist()
        late = [
            (int(v.positions[k]), self._late_reject(v, line(k), k, "duplicate", detail))
            for k in duplicate
            for detail in [f"same normalised text as record {record_id(v.digest(k))}"]
        ]
        rejects = v.rejects.with_lines(late)
        val = np.flatnonzero(fresh & v.val)
        unweighted = np.flatnonzero(fresh & ~v.val & (v.copies == 0))
        train = np.flatnonzero(fresh & ~v.val & (v.copies > 0))
        detail = f"not drawn at source weight {v.weight}"
        held = [
            (int(v.positions[k]), self._late_reject(v, line(k), k, "weight", detail))
            for k in unweighted.tolist()
        ]
        self.rejects.add((self.stage, v.source), v.read, rejects, held)
        source.rejected += len(rejects) + len(held)
        source.rules.update(v.rejected_rules)
        for rule, n in (("duplicate", len(duplicate)), ("weight", len(held))):
            if n:
                source.rules[rule] += n
        kept = fresh & (v.val | (v.copies > 0))  # val or train: a mask, not np.union1d (a sort)
        self.tally.count_kept(source, v.is_zh[kept], v.lengths[kept])
        self.val_out.write(b"".join(line(k) for k in val.tolist()))
        self.tally.val_records += len(val)
        self.spill.add(v, file_no, train, line_offsets, line_sizes)
        self.tally.train_records += len(train)

    def finish(self, pool: WorkerPool) -> tuple[StageTally, dict[str, str]]:
        """Write the training file in the sampler's order. Returns the tally and the digests
        of the stage's two files, by name."""
        self.val_out.close()
        sampler = self.spill.sampler(self.cfg)
        order = sampler.order()
        train_digest = self.spill.write_in_order(self.train_path, order, pool)
        self.tally.train_lines = len(order)
        self.tally.train_zh_lines = int(sampler.is_zh[order].sum())
        train_name, val_name = output_names(self.stage)
        return self.tally, {train_name: train_digest, val_name: self.val_out.hexdigest()}


def _stage_specs(cfg: DataConfig, stage: str) -> list[SourceSpec]:
    return cfg.sft_sources if stage == "sft" else cfg.pref_sources


def resolve_workers(cfg: DataConfig) -> int:
    """`cfg.workers`, or for 0 (auto): one per CPU (at most 8) when there is enough to share
    (local input of at least `PARALLEL_MIN_BYTES`, or a hub source), else 1."""
    if cfg.workers:
        return cfg.workers
    total = 0
    for stage in STAGES:
        for spec in _stage_specs(cfg, stage):
            if spec.weight == 0:
                continue
            folder = local_dir(spec, cfg.raw_dir)
            if not folder.exists():
                return min(available_cpus(), 8)
            total += sum(path.stat().st_size for path in find_data_files(folder))
    return min(available_cpus(), 8) if total >= PARALLEL_MIN_BYTES else 1


def _raw_batches(
    cfg: DataConfig, writers: dict[str, StageWriter], read_stats: ReadStats, spill_dir: Path
) -> Iterator[RawBatch]:
    for stage, writer in writers.items():
        for spec in _stage_specs(cfg, stage):
            if spec.weight == 0:
                writer.skip_source(spec)
                continue
            writer.start_source(spec)
            for work in iter_work(spec, cfg.raw_dir, read_stats, cfg.batch_size):
                batch = (
                    RawBatch(stage, spec.name, spec.weight, work)
                    if isinstance(work, JsonlChunk)
                    else RawBatch.of(stage, spec.name, spec.weight, work)
                )
                batch.spill_dir = str(spill_dir)
                yield batch


def stage_report(tally: StageTally) -> dict[str, Any]:
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
    filters = {name: vars(counts) for name, counts in tally.rule_counts.items()}
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
    """Run the whole data stage; returns the report (also written to `report.json`). Without
    automatic garbage collection (`parallel.collection_paused`): re-enabled at the end of the
    judging, the collector's first pass took 0.03 s on the stage's last stretch, where nothing
    else runs."""
    with collection_paused():
        return _prepare_data(cfg)


def _prepare_data(cfg: DataConfig) -> dict[str, Any]:
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_manifest(out_dir)
    read_stats = ReadStats()
    report: dict[str, Any] = {}
    workers = resolve_workers(cfg)
    log.info("judging batches in %d process%s", workers, "es" if workers > 1 else "")
    digests: dict[str, str] = {}  # each output's digest, taken as it is written
    with staging_dir(out_dir) as staging:
        with ChunkedFile(staging / REJECTED, digest=True) as rejects_file:
            rejects = RejectsWriter(rejects_file, cfg.batch_size)
            files = LineFiles()
            try:
                writers = {stage: StageWriter(stage, cfg, staging, rejects, files) for stage in STAGES}
                batches = read_ahead(
                    _raw_batches(cfg, writers, read_stats, staging),
                    lambda batch: batch.chunk.end - batch.chunk.start if batch.chunk else _READ_AHEAD // 4,
                    _READ_AHEAD,
                )
                with (
                    closing(batches),
                    JudgedProgress() as progress,
                    WorkerPool(
                        workers, start_worker, (JudgeSettings.of(cfg),), preload=FORK_SERVER_PRELOAD
                    ) as pool,
                ):
                    for verdicts in pool.map(judge_batch, batches):
                        if verdicts.chunk is not None:
                            progress.advance(verdicts.chunk)
                        read_stats.blank_lines += verdicts.blank_lines
                        writers[verdicts.stage].add(verdicts)
                    rejects.flush()
                    for stage, writer in writers.items():
                        tally, digests_of_stage = writer.finish(pool)
                        digests |= digests_of_stage
                        report[stage] = stage_report(tally)
                        _warn_on_hints(stage, report[stage])
                    files.remove(pool)
            finally:
                files.close()
            digests[REJECTED] = rejects_file.hexdigest()
        report["inputs"] = {"blank_lines": read_stats.blank_lines, "empty_files": read_stats.empty_files}
        report_bytes = orjson.dumps(report, option=orjson.OPT_INDENT_2)
        atomic_write_bytes(staging / REPORT, report_bytes)
        digests[REPORT] = bytes_digest(report_bytes)
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
        output_digests=digests,
    )
    return report
