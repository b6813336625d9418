"""The training, evaluation and export sections, each from its stage's finished output: the
training log and manifest of every run, eval_harness's `results.json`, and every export
folder's manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from k12tune.config.eval import EvalConfig
from k12tune.eval.report import limit_note, plot_scores, slice_notes, summary_table, table_note
from k12tune.export.plan import human
from k12tune.manifest import MANIFEST
from k12tune.report.document import Figure, Heading, Section, Table, Text, Verbatim, number
from k12tune.report.figures import png
from k12tune.report.inputs import StageOutput
from k12tune.train.runlog import PANELS, TRAIN_LOG, plot_curves, read_log


def last(rows: list[dict[str, Any]], key: str) -> float | None:
    """The last value of `key` in the log, or None when it was never logged."""
    return next((row[key] for row in reversed(rows) if key in row), None)


def curves(run: StageOutput, rows: list[dict[str, Any]], counts: dict[str, Any]) -> Figure:
    start = counts.get("start")
    caption = f"{run.name}: {run.stage} in `{run.folder}`" + (f"; start: {start}" if start else "")
    title = f"{run.name} ({run.stage})"
    return Figure(f"curves_{run.name}.png", caption, png(lambda out: plot_curves(rows, out, title)))


def training_section(runs: list[StageOutput]) -> Section:
    section = Section("training", "Training")
    section.problems += [f"{run.name}: {run.problem}" for run in runs if run.manifest is None]
    finished = [(run, run.manifest["counts"]) for run in runs if run.manifest is not None]
    if not finished:
        return section
    logs = {run.name: read_log(run.folder / TRAIN_LOG) for run, _ in finished}
    # The curves' own quantities, as columns; only those some run logged.
    columns = [
        (key, f"{ylabel} ({label})")
        for _, ylabel, series in PANELS
        for key, label in series
        if any(key in row for rows in logs.values() for row in rows)
    ]
    rows = tuple(
        (
            Verbatim(run.name),
            run.stage,
            Verbatim(str(run.folder)),
            number(counts["global_step"]),
            *(number(last(logs[run.name], key)) for key, _ in columns),
        )
        for run, counts in finished
    )
    section.blocks += [
        Text(
            "The last value logged of each quantity: train values are means over the last "
            "logging interval, val values are from the last evaluation on the validation file. "
            "Reward margin: the mean of chosen minus rejected reward; reward accuracy: the share "
            "of pairs whose chosen answer has the higher reward (README: Reward metrics)."
        ),
        Table(("run", "stage", "folder", "steps", *(label for _, label in columns)), rows),
        *(curves(run, logs[run.name], counts) for run, counts in finished),
    ]
    return section


def eval_section(found: StageOutput) -> Section:
    section = Section("evaluation", "Evaluation")
    if found.manifest is None:
        section.problems.append(str(found.problem))
        return section
    results = orjson.loads((found.folder / "results.json").read_bytes())["k12tune"]
    cfg = EvalConfig.model_validate(found.manifest["config"])
    table = results["scores"]
    head, rows = summary_table(table)
    runs = tuple((Verbatim(name), Verbatim(stack)) for name, stack in results["runs"].items())
    section.blocks += [
        Text(f"From `{found.folder / 'results.json'}`."),
        Table(("run", "model evaluated"), runs),
        Text(table_note(table)),
        Table(tuple(head), tuple(tuple(cells) for cells in rows)),
        *(Text(note) for note in slice_notes(cfg, table)),
        Heading("Data sources"),
        *(Text(source) for source in results["tasks"]),
    ]
    if (note := limit_note(cfg)) is not None:
        section.blocks.append(Text(note))
    section.blocks.append(
        Figure("scores.png", "Scores per task and run.", png(lambda out: plot_scores(table, out)))
    )
    return section


def export_facts(counts: dict[str, Any]) -> tuple[tuple[str, str | Verbatim], ...]:
    check = counts["check"]
    verdict = "passed" if check["passed"] else "FAILED"
    facts: list[tuple[str, str | Verbatim]] = [("mode", counts["mode"]), ("stack", Verbatim(counts["stack"]))]
    if counts["mode"] == "adapter":
        facts += [("rank", number(counts["rank"])), ("how", counts["how"])]
    else:
        facts += [("dtype", counts["dtype"]), ("shards", number(len(counts["shards"])))]
    facts += [
        (
            "check",
            f"{verdict}: max |export - trained| logit {number(check['max_abs_diff'])} against a "
            f"tolerance of {number(check['tolerance'])}, over {check['prompts']} prompts "
            f"({check['positions']:,} positions)",
        ),
        ("eval scores in its card", counts["eval"]),
    ]
    if check["unconfirmed"]:
        facts.append(("not confirmed (within the tolerance)", ", ".join(check["unconfirmed"])))
    return tuple(facts)


def export_section(root: Path, exports: list[StageOutput]) -> Section:
    section = Section("exports", "Exports")
    if not exports:
        section.problems.append(f"not run: no export under {root}; run `k12tune export_lora --dry-run false`")
    section.problems += [f"{e.name}: {e.problem}" for e in exports if e.manifest is None]
    for export in exports:
        if export.manifest is None:
            continue
        names = [*sorted(export.manifest["outputs"]), MANIFEST]
        files = tuple(
            (Verbatim(str(export.folder / name)), human((export.folder / name).stat().st_size))
            for name in names
        )
        section.blocks += [
            Heading(f"`{export.folder}`"),
            Table(("what", "value"), export_facts(export.manifest["counts"])),
            Table(("file", "size"), files),
        ]
    return section
