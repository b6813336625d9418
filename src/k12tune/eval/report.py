"""Scores from lm-eval's output: the headline table, the K12 slice, deltas, and the bar chart.

Definitions:
- a task's score is lm-eval's own value of the task's configured metric (for a group, lm-eval's
  aggregate: the question-weighted mean over its subtasks, `weight_by_size`);
- the K12 slice's accuracy is the share of questions answered correctly over the listed
  subjects that were evaluated: sum_s acc_s * n_s / sum_s n_s, with n_s the questions evaluated
  in subject s (after `limit`), so it is comparable with the group scores; its standard error is
  lm-eval's pooled one for groups;
- a delta is the adapter run's score minus the base run's, in percentage points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from k12tune.config.eval import EvalConfig

K12 = "k12_slice"


def _value(block: dict[str, Any], metric: str) -> tuple[float, float | None] | None:
    value = block.get(f"{metric},none")
    if value is None:
        return None
    stderr = block.get(f"{metric}_stderr,none")
    return float(value), (float(stderr) if isinstance(stderr, int | float) else None)


def k12_slice(raw: dict[str, Any], subjects: list[str]) -> dict[str, Any]:
    """The slice's accuracy from one lm-eval output (see the module docstring)."""
    from lm_eval.api.metrics import pooled_sample_stderr

    results, sizes = raw["results"], raw["n-samples"]
    used = [s for s in subjects if s in results and "acc,none" in results[s]]
    if not used:
        return {"subjects": [], "missing": list(subjects), "questions": 0, "correct": 0, "acc": None}
    n = [int(sizes[s]["effective"]) for s in used]
    acc = [float(results[s]["acc,none"]) for s in used]
    correct = sum(round(a * k) for a, k in zip(acc, n, strict=True))
    stderrs = [float(results[s]["acc_stderr,none"]) for s in used]
    total = sum(n)
    return {
        "subjects": used,
        "missing": [s for s in subjects if s not in used],
        "questions": total,
        "correct": correct,
        "acc": correct / total,
        "acc_stderr": pooled_sample_stderr(stderrs, n) if len(used) > 1 else stderrs[0],
        "per_subject": {s: {"acc": a, "n": k} for s, a, k in zip(used, acc, n, strict=True)},
    }


def scores(cfg: EvalConfig, raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Run -> row name -> {metric, value, stderr}; rows are the configured tasks and the slice."""
    table: dict[str, dict[str, Any]] = {}
    for run, output in raw.items():
        rows: dict[str, Any] = {}
        for task in cfg.tasks:
            got = _value(output["results"].get(task.name, {}), task.metric)
            rows[task.name] = {
                "metric": task.metric,
                "value": got[0] if got else None,
                "stderr": got[1] if got else None,
            }
        piece = k12_slice(output, cfg.k12_subjects)
        rows[K12] = {"metric": "acc", "value": piece["acc"], "stderr": piece.get("acc_stderr"), **piece}
        table[run] = rows
    return table


def first_names(names: list[str], keep: int) -> str:
    """Up to `keep` names, then how many more: long subject lists stay one readable line."""
    more = f" and {len(names) - keep} more" if len(names) > keep else ""
    return ", ".join(names[:keep]) + more


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def delta_points(value: float | None, base: float | None) -> str:
    """The score minus the base's, in percentage points, from the two shown values (so the
    columns of a table always agree to the last digit)."""
    if value is None or base is None:
        return "n/a"
    return f"{round(100 * value, 2) - round(100 * base, 2):+.2f}"


def compared(table: dict[str, dict[str, Any]]) -> bool:
    """Whether the table is compare mode's: the bare base and at least one other run."""
    return "base" in table and len(table) > 1


def summary_table(table: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the score table: one row per task (and the slice), scores in
    percent, and in compare mode each run's delta to the base."""
    runs = list(table)
    compare = compared(table)
    head = ["task", "metric", *runs]
    if compare:
        head += [f"Δ {r}" for r in runs[1:]]
    rows = []
    for row in table[runs[0]]:
        metric = table[runs[0]][row]["metric"]
        cells = [row, metric, *[percent(table[r][row]["value"]) for r in runs]]
        if compare:
            cells += [delta_points(table[r][row]["value"], table["base"][row]["value"]) for r in runs[1:]]
        rows.append(cells)
    return head, rows


def table_note(table: dict[str, dict[str, Any]]) -> str:
    """What the numbers in `summary_table` are."""
    delta = " Δ: the run's score minus the base's, in points." if compared(table) else ""
    return (
        "Scores in percent (lm-eval's value of each task's metric; groups are question-weighted "
        "means of their subtasks)." + delta
    )


def slice_notes(cfg: EvalConfig, table: dict[str, dict[str, Any]]) -> list[str]:
    """What the K12 slice covers, and which listed subjects were not evaluated."""
    piece = next(iter(table.values()))[K12]
    notes = [
        f"K12 slice: {len(piece['subjects'])} of {len(cfg.k12_subjects)} listed subjects evaluated, "
        f"{piece['questions']} questions; its accuracy is the share of those questions answered "
        "correctly."
    ]
    missing = piece["missing"]
    if missing:
        full = " (listed in results.json)" if len(missing) > 6 else ""
        notes.append(f"Not evaluated: {first_names(missing, 6)}{full}.")
    return notes


def limit_note(cfg: EvalConfig) -> str | None:
    """The warning a `limit` run carries: its scores are a smoke test's."""
    if cfg.limit is None:
        return None
    return f"limit={cfg.lm_eval_limit()}: a smoke test; not comparable with published scores."


def summary_markdown(cfg: EvalConfig, table: dict[str, dict[str, Any]], sources: list[str]) -> str:
    head, rows = summary_table(table)
    lines = [
        "# Evaluation summary",
        "",
        table_note(table),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *["| " + " | ".join(cells) + " |" for cells in rows],
        "",
        *slice_notes(cfg, table),
        "",
        "Data sources:",
        *[f"- {s}" for s in sources],
    ]
    if (note := limit_note(cfg)) is not None:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def plot_scores(table: dict[str, dict[str, Any]], out: Path | BinaryIO) -> None:
    """Grouped bars: one group per task (and the slice), one bar per run, as a PNG written to a
    path or a binary file object."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(table)
    rows = list(table[runs[0]])
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(rows) * max(1, len(runs)) / 2), 4.0))
    for i, run in enumerate(runs):
        values = [100 * (table[run][r]["value"] or 0.0) for r in rows]
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(rows))]
        bars = ax.bar(xs, values, width, label=run)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(rows)), [f"{r}\n({table[runs[0]][r]['metric']})" for r in rows], fontsize=8)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    ax.set_title("k12tune evaluation")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
