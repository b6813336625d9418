"""Which stage outputs the report may show. A folder counts only when its manifest says its
stage finished (`verify_manifest`: complete, every listed file present and, with hashes
checked, unchanged); anything else is named with the reason and the command that fixes it, and
the report goes on without it: a partial pipeline is still worth reporting."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from k12tune.config.report import ReportConfig
from k12tune.errors import DataError
from k12tune.manifest import MANIFEST, verify_manifest
from k12tune.train.runner import RUN_FILE

ALIGN_STAGES: tuple[str, ...] = ("train_dpo", "train_orpo")


@dataclass(frozen=True)
class StageOutput:
    name: str  # the run's name in the report: data, sft, an align_dirs key, eval, an export folder
    folder: Path
    stage: str
    manifest: dict[str, Any] | None  # None: not finished, see `problem`
    problem: str | None = None


@dataclass(frozen=True)
class Inputs:
    data: StageOutput
    runs: list[StageOutput]  # sft first, then align_dirs in their order
    eval: StageOutput
    export_root: Path
    exports: list[StageOutput]  # every folder under export_root, by name


def run_hint(stages: tuple[str, ...]) -> str:
    return " or ".join(f"`k12tune {stage} --dry-run false`" for stage in stages)


def written_by(folder: Path, stages: tuple[str, ...]) -> str:
    """The stage that wrote `folder`: its manifest's, else the one `run.json` names (a training
    run under way or crashed), else the first of `stages`."""
    for name in (MANIFEST, RUN_FILE):
        try:
            stage = orjson.loads((folder / name).read_bytes()).get("stage")
        except (OSError, orjson.JSONDecodeError, AttributeError):
            continue
        if stage in stages:
            return stage
    return stages[0]


def find_output(name: str, folder: str | Path, stages: tuple[str, ...], check_hashes: bool) -> StageOutput:
    folder = Path(folder)
    if not folder.is_dir():
        problem = f"not run: {folder} does not exist; run {run_hint(stages)}"
        return StageOutput(name, folder, stages[0], None, problem)
    stage = written_by(folder, stages)
    try:
        manifest = verify_manifest(folder, stage, check_hashes=check_hashes)
    except DataError as exc:
        return StageOutput(name, folder, stage, None, f"unfinished: {exc}")
    return StageOutput(name, folder, stage, manifest)


def find_inputs(cfg: ReportConfig, *, check_hashes: bool) -> Inputs:
    root = Path(cfg.export_root)
    folders = (
        sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if root.is_dir()
        else []
    )
    return Inputs(
        data=find_output("data", cfg.data_dir, ("prepare_data",), check_hashes),
        runs=[
            find_output("sft", cfg.sft_dir, ("train_sft",), check_hashes),
            *(
                find_output(name, folder, ALIGN_STAGES, check_hashes)
                for name, folder in cfg.align_dirs.items()
            ),
        ],
        eval=find_output("eval", cfg.eval_dir, ("eval_harness",), check_hashes),
        export_root=root,
        exports=[find_output(p.name, p, ("export_lora",), check_hashes) for p in folders],
    )
