"""The data stage's dry run: where each source would be read from, how many records it holds
(estimated from a sample), what share the rules would keep, and where the outputs would go.
Reads at most `sample_size` records and the first MiB of each local file; never contacts the hub.
"""

from __future__ import annotations

from collections import Counter
from itertools import islice
from pathlib import Path

from k12tune.config.data import DataConfig
from k12tune.data.dedup import Deduplicator
from k12tune.data.judge import Judge, JudgeSettings, RawBatch
from k12tune.data.pipeline import REJECTED, REPORT, STAGES, output_names, resolve_workers
from k12tune.data.readers import ReadStats, find_data_files, iter_file, local_dir
from k12tune.data.specs import SourceSpec
from k12tune.manifest import MANIFEST

_HEAD = 1 << 20


def estimate_records(path: Path, sample_lines: list[int]) -> tuple[int, bool]:
    """(records, exact): exact when the whole file fit in the sample, else an estimate from
    the first MiB's bytes per line and the sample's lines per record."""
    size = path.stat().st_size
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows, True
    with open(path, "rb") as handle:
        head = handle.read(_HEAD)
    if len(head) == size or not sample_lines:
        return len(sample_lines), len(head) == size
    bytes_per_line = len(head) / max(1, head.count(b"\n"))
    lines_per_record = (sample_lines[-1] - sample_lines[0]) / max(1, len(sample_lines) - 1) or 1.0
    return round(size / bytes_per_line / lines_per_record), False


def _source_lines(spec: SourceSpec, cfg: DataConfig, judge: Judge, sample_size: int) -> list[str]:
    if spec.weight == 0:
        return [f"  {spec.name}: weight 0, not opened"]
    folder = local_dir(spec, cfg.raw_dir)
    if not folder.exists():
        subsets = ", ".join(spec.subsets) if spec.subsets else "default"
        return [
            f"  {spec.name}: hub {spec.hub_id} (subsets: {subsets}; split {spec.split}), "
            f"weight {spec.weight}; "
            f"not contacted in a dry run (no local folder {folder})"
        ]
    lines = [f"  {spec.name}: local {folder}, weight {spec.weight}, hint {spec.lang_hint}"]
    total, exact, rules, kept, sampled = 0, True, Counter(), 0, 0
    for path in find_data_files(folder):
        items = list(islice(iter_file(path, spec.name, ReadStats()), sample_size))
        count, is_exact = estimate_records(path, [item.origin.line for item in items])
        total += count
        exact &= is_exact
        verdicts = judge(RawBatch.of(judge.stage, spec.name, spec.weight, items))
        fresh = Deduplicator().first_seen(verdicts.digests)
        kept += int(fresh.sum())
        sampled += len(items)
        rules.update(verdicts.rejected_rules)
        rules["duplicate"] += int((~fresh).sum())
        lines.append(
            f"    {path} ({path.stat().st_size:,} bytes): {'' if is_exact else '~'}{count:,} records"
        )
    share = f"{kept / sampled:.0%}" if sampled else "n/a"
    why = ", ".join(f"{rule} {n}" for rule, n in rules.most_common()) or "none"
    lines.append(
        f"    total {'' if exact else '~'}{total:,} records; "
        f"sample of {sampled}: {share} kept (dropped: {why})"
    )
    return lines


def data_plan(cfg: DataConfig, sample_size: int = 200) -> str:
    out = Path(cfg.out_dir)
    c = cfg.clean
    lines = ["prepare_data plan (dry run: nothing is written)", "sources:"]
    for stage in STAGES:
        specs = cfg.sft_sources if stage == "sft" else cfg.pref_sources
        judge = Judge(stage, JudgeSettings.of(cfg))
        lines.append(f" {stage}:" + ("" if specs else " none"))
        for spec in specs:
            lines.extend(_source_lines(spec, cfg, judge, sample_size))
    fallback = "kept as lang en" if c.allow_english_fallback else "dropped"
    lines += [
        "rules (in order; preference pairs are judged on prompt, chosen and rejected):",
        f"  length: {c.min_chars}..{c.max_chars} code points",
        f"  zh_share: >= {c.min_zh_share} of letters are CJK ideographs, else {fallback}",
        f"  repetition: rep_ratio_4gram <= {c.max_rep_ratio_4gram}",
        "  pair_identical: chosen must differ from rejected (preference only)",
        "  duplicate: SHA-256 of the NFKC, white-space-collapsed text; first occurrence wins",
        f"split: val_fraction {cfg.val_fraction} by id hash; mix: zh_ratio {cfg.mix.zh_ratio}, "
        f"length buckets {cfg.mix.length_edges}, when_exhausted {cfg.mix.when_exhausted}, seed {cfg.seed}",
        f"workers: {resolve_workers(cfg)} process(es) judging batches"
        + (" (auto)" if cfg.workers == 0 else ""),
        "outputs:",
        *(f"  {out / name}" for stage in STAGES for name in output_names(stage)),
        f"  {out / REJECTED}",
        f"  {out / REPORT}",
        f"  {out / MANIFEST} (written last: marks the outputs complete)",
    ]
    return "\n".join(lines)
