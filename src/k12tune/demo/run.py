"""`make demo` / `python -m k12tune.demo`: the whole pipeline on the demo data, on any CPU, offline.

Each step is printed as the command a user would type for it, then run in this process (one
Python start-up instead of thirteen). Stages read `configs/demo/*.yaml`, whose paths all point
under `demo/`, so the demo never touches a real run's `data_proc/` or `outputs/`. A failed step
stops the demo with its exit status; the stage's own manifest rules keep its output from being
taken for finished.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEMO_ROOT = Path("demo")
MARKER = ".k12tune-demo"  # written into demo/ so that a fresh run only ever deletes its own folder
RAW, PROC, BASE = DEMO_ROOT / "data_raw", DEMO_ROOT / "data_proc", DEMO_ROOT / "tiny_base"
REPORT = DEMO_ROOT / "outputs" / "report.html"
ALIGN = DEMO_ROOT / "outputs" / "align"
CHAT_PROMPT = "小明有5个苹果，吃掉2个后还剩几个？"


@dataclass(frozen=True)
class Step:
    """A stage run (`stage` with its demo config) or one of the demo's own set-up steps."""

    stage: str
    config: str = ""
    dry_run: bool = False

    def stage_args(self, configs: Path) -> list[str]:
        if self.stage == "chat":
            return [
                "--adapter",
                str(ALIGN),
                "--prompt",
                CHAT_PROMPT,
                "--temperature",
                "0",
                "--max-new-tokens",
                "32",
            ]
        return ["--config", str(configs / self.config), "--dry-run", str(self.dry_run).lower()]

    def command(self, configs: Path) -> str:
        """The same step as a shell command."""
        if self.stage == "demo_data":
            return f"python -m k12tune.demo.data {RAW}"
        if self.stage == "demo_base":
            return f"python -m k12tune.demo.base {BASE} {PROC}"
        if self.stage == "chat":
            return " ".join(["k12tune chat", *(shlex.quote(arg) for arg in self.stage_args(configs))])
        return " ".join(["python -m", f"scripts.{self.stage}", *self.stage_args(configs)])


# The pipeline's order, with a dry run (the plan) before the first real run of the main stages.
STEPS: tuple[Step, ...] = (
    Step("demo_data"),
    Step("prepare_data", "data.yaml"),
    Step("demo_base"),
    Step("train_sft", "sft.yaml", dry_run=True),
    Step("train_sft", "sft.yaml"),
    Step("train_orpo", "orpo.yaml"),
    Step("train_dpo", "dpo.yaml", dry_run=True),
    Step("train_dpo", "dpo.yaml"),
    Step("eval_harness", "eval.yaml", dry_run=True),
    Step("eval_harness", "eval.yaml"),
    Step("export_lora", "export.yaml", dry_run=True),
    Step("export_lora", "export.yaml"),
    Step("report", "report.yaml"),
    Step("chat"),
)


def fresh_root() -> None:
    """Start from an empty demo/; refuse to delete a demo/ folder the demo did not make."""
    if DEMO_ROOT.exists():
        if not (DEMO_ROOT / MARKER).is_file():
            raise SystemExit(
                f"error: {DEMO_ROOT.resolve()} exists but was not written by the demo (no {MARKER}); "
                "move it away or run the demo from another folder"
            )
        shutil.rmtree(DEMO_ROOT)
    DEMO_ROOT.mkdir()
    (DEMO_ROOT / MARKER).write_text("written by `python -m k12tune.demo`; deleted by its next run\n")


def run_step(step: Step, configs: Path) -> int:
    if step.stage == "demo_data":
        from k12tune.demo.data import write_demo_data

        write_demo_data(RAW)
        return 0
    if step.stage == "demo_base":
        from k12tune.demo.base import build_demo_base

        build_demo_base(BASE, PROC)
        return 0
    if step.stage == "chat":
        from k12tune.chat import main as chat

        print("(the tiny demo model was trained for seconds from random weights: its words are noise)")
        return chat(step.stage_args(configs))
    from k12tune.cli import run_stage

    return run_stage(
        step.stage, ["--config", str(configs / step.config), "--dry-run", str(step.dry_run).lower()]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m k12tune.demo",
        description="Run the whole pipeline on the bundled demo data with a tiny offline model "
        "(prepare_data -> train_sft -> train_orpo -> train_dpo -> eval_harness -> export_lora -> "
        "report, then one answer from k12tune chat) under ./demo/, on the CPU, with no network. "
        "Deletes and rewrites ./demo/.",
    )
    parser.add_argument(
        "--configs", default="configs/demo", type=Path, help="Folder of the demo's stage configs."
    )
    args = parser.parse_args(argv)
    if not (args.configs / "data.yaml").is_file():
        raise SystemExit(f"error: {args.configs}/data.yaml not found: run the demo from the repository root")
    fresh_root()
    started = time.perf_counter()
    for number, step in enumerate(STEPS, 1):
        print(f"\n[{number}/{len(STEPS)}] $ {step.command(args.configs)}", flush=True)
        step_started = time.perf_counter()
        status = run_step(step, args.configs)
        if status != 0:
            print(f"demo stopped: step {number} ({step.stage}) failed with status {status}", file=sys.stderr)
            return status
        print(f"[{number}/{len(STEPS)}] done in {time.perf_counter() - step_started:.1f} s", flush=True)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; the report: {REPORT} (and report.md)")
    return 0
