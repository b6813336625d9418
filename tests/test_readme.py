"""The README's GPU workflow is the one the report prints: both come from the stage registry."""

from __future__ import annotations

from pathlib import Path

from k12tune.cli import STAGES
from k12tune.report.commands import gpu_commands

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_gpu_workflow_matches_the_report() -> None:
    text = README.read_text(encoding="utf-8")
    workflow = text.split("## The real GPU workflow", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line.split("  #")[0].rstrip() for line in workflow.splitlines()]
    for command in gpu_commands():
        assert command in lines, command
    for name, stage in STAGES.items():
        command = f"scripts.{name} --config {stage.default_config} --dry-run false"
        assert any(command in line for line in lines), command
