"""What a training run leaves beside its adapter to show how it went: `train_log.jsonl` (one JSON
object per logging event, appended as training goes, so a crashed run keeps its history) and
`loss_curve.png` (training and validation loss against the optimizer step; for the preference
stages also the reward margin and the reward accuracy, each in its own panel)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

from k12tune.atomic import atomic_write_bytes

TRAIN_LOG = "train_log.jsonl"
LOSS_CURVE = "loss_curve.png"


def make_log_callback(path: Path) -> Any:
    """A transformers `TrainerCallback` appending every log event, with step and epoch, to `path`
    (main process only)."""
    from transformers import TrainerCallback

    class JsonlLogCallback(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any
        ) -> None:
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step, "epoch": state.epoch, **logs}
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    return JsonlLogCallback()


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def trim_log(path: Path, last_step: int) -> None:
    """On resume: drop the rows written after the checkpoint, since those steps are redone."""
    rows = [row for row in read_log(path) if row["step"] <= last_step]
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))


# (panel title, y label, [(log key, legend label)]); a panel is drawn when any of its keys was logged.
PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("loss", "loss", (("loss", "train"), ("eval_loss", "val"))),
    (
        "reward margin (chosen - rejected)",
        "margin",
        (("rewards/margins", "train"), ("eval_rewards/margins", "val")),
    ),
    (
        "reward accuracy (share of pairs with chosen > rejected)",
        "accuracy",
        (("rewards/accuracies", "train"), ("eval_rewards/accuracies", "val")),
    ),
)


def plot_curves(rows: list[dict[str, Any]], out: Path | BinaryIO, title: str) -> None:
    """The logged curves against the optimizer step, one panel per quantity, as a PNG written to
    a path or a binary file object (the report embeds it without a file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in PANELS if any(key in r for r in rows for key, _ in p[2])] or [PANELS[0]]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 3.2 * len(panels)), dpi=100, squeeze=False)
    for ax, (name, ylabel, series) in zip(axes[:, 0], panels, strict=True):
        for key, label in series:
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o" if label == "val" else None, label=label)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
