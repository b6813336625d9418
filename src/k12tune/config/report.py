"""`report`'s config (`configs/report.yaml`): where each stage wrote its outputs, and where the
report goes. Every input is optional: a stage that has not run is reported as such."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from k12tune.config.loader import StrictModel

# Run names become file names (report_assets/curves_<name>.png) and HTML anchors.
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class ReportConfig(StrictModel):
    title: str = Field(default="k12tune pipeline report", description="The report's heading.")
    data_dir: str = Field(
        default="data_proc", description="prepare_data's output (report.json, rejected.jsonl)."
    )
    sft_dir: str = Field(default="outputs/sft", description="train_sft's output folder.")
    align_dirs: dict[str, str] = Field(
        default_factory=lambda: {"align": "outputs/align"},
        description="Run name -> train_dpo or train_orpo output folder, in the order to report them.",
    )
    eval_dir: str = Field(default="outputs/eval", description="eval_harness's output folder.")
    export_root: str = Field(
        default="outputs/adapters",
        description="export_lora's out_root: every export folder under it is reported.",
    )
    out_dir: str = Field(
        default="outputs",
        description="Where report.html (self-contained), report.md and report_assets/ (the "
        "PNGs report.md shows) are written.",
    )
    check_hashes: bool = Field(
        default=True,
        description="Re-hash every file an input's manifest lists, so a file changed after its "
        "stage wrote it is reported instead of shown; false: only check that each manifest is "
        "complete and its files present (a merged 7B export is ~15 GB to hash).",
    )
    example_chars: int = Field(
        default=160,
        ge=20,
        description="Longest rejection detail shown as a rule's example; longer ones are cut.",
    )

    @field_validator("align_dirs")
    @classmethod
    def _run_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not RUN_NAME.match(name) or name == "sft"]
        if bad:
            raise ValueError(
                f"run names {bad} are not allowed: use letters, digits, '-' and '_' (the name "
                "becomes a file name), and not 'sft', which names sft_dir's run"
            )
        return value
