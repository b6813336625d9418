"""The data section: what prepare_data read, kept and rejected per stage and per source, why it
rejected (each rule's count and its first rejected record, by file and line), and the kept
records' languages and lengths. Numbers come from `report.json` as the stage wrote it; the
examples from `rejected.jsonl`, read only until every rule has one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from k12tune.data.pipeline import REJECTED, REPORT, STAGES
from k12tune.report.document import Figure, Heading, Section, Table, Text, Verbatim, number, share
from k12tune.report.figures import bar_panels
from k12tune.report.inputs import StageOutput

STAGE_NAMES = {"sft": "SFT", "pref": "preference"}


def rule_examples(path: Path, wanted: dict[str, set[str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(stage, rule) -> the first rejected row of that stage and rule in `path`. The file is
    streamed and left as soon as every wanted rule has its example: it holds every rejected
    record in full and may be large."""
    left = {(stage, rule) for stage, rules in wanted.items() for rule in rules}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    with open(path, "rb") as handle:
        for line in handle:
            if not left:
                break
            row = orjson.loads(line)
            key = (row["stage"], row["rule"])
            if key in left:
                left.remove(key)
                found[key] = row
    return found


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def accounting(report: dict[str, Any]) -> Table:
    rows = []
    for stage in STAGES:
        r = report[stage]
        gap = r["read"] - r["kept"] - r["rejected"]
        rows.append(
            (
                STAGE_NAMES[stage],
                number(r["read"]),
                number(r["kept"]),
                number(r["rejected"]),
                "yes" if gap == 0 else f"NO: {gap:+,} unaccounted",
                number(r["train_lines"]),
                number(r["val_records"]),
                share(r["train_zh_share"]),
            )
        )
    head = (
        "stage",
        "read",
        "kept",
        "rejected",
        "read = kept + rejected",
        "train lines",
        "val",
        "zh in train",
    )
    return Table(head, tuple(rows))


def rules_table(stage: str, r: dict[str, Any], examples: dict[tuple[str, str], Any], limit: int) -> Table:
    rows = []
    for rule, count in sorted(r["rules"].items(), key=lambda kv: (-kv[1], kv[0])):
        example = examples.get((stage, rule))
        where = Verbatim(f"{example['file']}:{example['line']}") if example else "—"
        detail = Verbatim(cut(str(example["detail"]), limit)) if example else "—"
        rows.append((Verbatim(rule), number(count), share(count / r["read"]), where, detail))
    return Table(("rule", "rejected", "of read", "first example (file:line)", "its detail"), tuple(rows))


def sources_table(report: dict[str, Any]) -> Table:
    rows = []
    for stage in STAGES:
        for name, src in report[stage]["sources"].items():
            rules = ", ".join(
                f"{rule} {n:,}" for rule, n in sorted(src["rules"].items(), key=lambda kv: -kv[1])
            )
            rows.append(
                (
                    STAGE_NAMES[stage],
                    Verbatim(name),
                    Verbatim(src["origin"]),
                    number(src["read"]),
                    number(src["kept"]),
                    number(src["rejected"]),
                    rules or "—",
                    share(src["kept_zh_share"]),
                )
            )
    head = ("stage", "source", "read from", "read", "kept", "rejected", "rejected by rule", "zh in kept")
    return Table(head, tuple(rows))


def filters_table(report: dict[str, Any]) -> Table:
    rows = [
        (
            STAGE_NAMES[stage],
            Verbatim(rule),
            *(number(c[k]) for k in ("seen", "kept", "dropped", "tagged_en")),
        )
        for stage in STAGES
        for rule, c in report[stage]["filters"].items()
    ]
    return Table(("stage", "rule", "seen", "kept", "dropped", "kept as en"), tuple(rows))


def data_section(found: StageOutput, example_chars: int) -> Section:
    section = Section("data", "Data")
    if found.manifest is None:
        section.problems.append(str(found.problem))
        return section
    report = orjson.loads((found.folder / REPORT).read_bytes())
    wanted = {stage: set(report[stage]["rules"]) for stage in STAGES}
    examples = rule_examples(found.folder / REJECTED, wanted)
    blocks = section.blocks
    blocks += [
        Text(
            f"From `{found.folder / REPORT}` and `{found.folder / REJECTED}`. Every record read is "
            "kept (a training or validation line) or rejected with one reason: the first rule it "
            "failed. Train lines count a record once per copy (a source weight of 2 gives two)."
        ),
        accounting(report),
    ]
    for stage in STAGES:
        blocks.append(Heading(f"{STAGE_NAMES[stage]}: rejected by rule"))
        r = report[stage]
        blocks.append(
            rules_table(stage, r, examples, example_chars) if r["rules"] else Text("Nothing rejected.")
        )
        if r["skipped_sources"]:
            blocks.append(Text(f"Skipped (weight 0, not opened): {', '.join(r['skipped_sources'])}."))
    blocks += [Heading("Per source"), sources_table(report)]
    blocks += [
        Heading("Rule by rule"),
        Text(
            "Each rule sees the records the rules before it kept; `kept as en` counts records "
            "kept as English by `allow_english_fallback`."
        ),
        filters_table(report),
    ]
    inputs = report["inputs"]
    if inputs["empty_files"] or inputs["blank_lines"]:
        empty = ", ".join(inputs["empty_files"]) or "none"
        blocks.append(Text(f"Empty input files: {empty}. Blank lines skipped: {inputs['blank_lines']:,}."))
    blocks += [
        Figure(
            "languages.png",
            "Kept records (train and val) by language.",
            bar_panels(
                "kept records by language", "language", {STAGE_NAMES[s]: report[s]["lang"] for s in STAGES}
            ),
        ),
        Figure(
            "lengths.png",
            "Kept records by length in code points: the whole conversation (SFT), the prompt "
            "plus the longer answer (preference).",
            bar_panels(
                "kept records by length",
                "code points",
                {STAGE_NAMES[s]: report[s]["length_hist"] for s in STAGES},
            ),
        ),
    ]
    return section
