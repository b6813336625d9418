"""`eval_harness`'s config (`configs/eval.yaml`): what to evaluate, on which tasks, and how."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from k12tune.config.loader import StrictModel
from k12tune.config.train import ModelConfig

# The school subjects of C-Eval (middle and high school) and CMMLU (elementary and high school),
# as lm-eval names their tasks. C-Eval has no primary-school subject.
K12_SUBJECTS: tuple[str, ...] = (
    *(
        f"ceval-valid_middle_school_{s}"
        for s in ("mathematics", "biology", "physics", "chemistry", "politics", "geography", "history")
    ),
    *(
        f"ceval-valid_high_school_{s}"
        for s in (
            "mathematics",
            "physics",
            "chemistry",
            "biology",
            "politics",
            "geography",
            "chinese",
            "history",
        )
    ),
    *(
        f"cmmlu_elementary_{s}"
        for s in ("chinese", "commonsense", "information_and_technology", "mathematics")
    ),
    *(
        f"cmmlu_high_school_{s}"
        for s in ("biology", "chemistry", "geography", "mathematics", "physics", "politics")
    ),
)


class EvalTask(StrictModel):
    name: str = Field(description="lm-eval task or group name (`lm-eval ls tasks` lists them).")
    num_fewshot: int | None = Field(
        default=None, ge=0, description="Few-shot examples per question; null: the task's own default (0)."
    )
    metric: str = Field(
        default="acc", description="The metric shown in the summary table and chart (acc, acc_norm, ...)."
    )


def _default_tasks() -> list[EvalTask]:
    return [
        EvalTask(name="cmmlu", num_fewshot=5),
        EvalTask(name="ceval-valid", num_fewshot=5),
        EvalTask(name="hellaswag", metric="acc_norm"),
        EvalTask(name="winogrande"),
    ]


class EvalConfig(StrictModel):
    model: ModelConfig = Field(
        default_factory=ModelConfig,
        description="The base model; every adapter evaluated must have been trained on it.",
    )
    peft_adapter: str | None = Field(
        default="outputs/align",
        description="Adapter folder to evaluate (a train_sft, train_orpo or train_dpo output; an "
        "alignment adapter trained on the merged SFT model brings that SFT adapter along); "
        "null: the bare base. Ignored in compare mode.",
    )
    compare: bool = Field(
        default=False,
        description="true: evaluate the bare base and then each of compare_adapters in one run, "
        "and report every score with its delta to the base.",
    )
    compare_adapters: dict[str, str] = Field(
        default_factory=lambda: {"sft": "outputs/sft", "align": "outputs/align"},
        description="Name -> adapter folder, in the order to evaluate them (compare mode).",
    )
    tasks: list[EvalTask] = Field(
        default_factory=_default_tasks,
        description="Tasks or groups, each with its few-shot count and headline metric; a plain "
        "name is allowed.",
    )
    data_dir: str = Field(
        default="data_raw/eval",
        description="Local task copies, one folder per task (data_raw/eval/<task>/): a task with "
        "a folder here is read from it and never from the hub (README: Evaluation offline).",
    )
    k12_subjects: list[str] = Field(
        default_factory=lambda: list(K12_SUBJECTS),
        description="lm-eval subtasks of the K12 slice: the summary adds their question-weighted "
        "accuracy beside the full scores.",
    )
    batch_size: int | Literal["auto"] = Field(
        default=8, description="Requests per forward pass; auto: probe."
    )
    limit: float | None = Field(
        default=None,
        gt=0,
        description="Questions per subtask: a count (>= 1) or a share (< 1); for smoke tests only, "
        "the scores are then not comparable to published ones.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto",
        description="Weights and compute dtype; auto: bf16 on a GPU that has it, else float32.",
    )
    device: str = Field(default="auto", description="cuda, cuda:1, cpu; auto: cuda when available.")
    max_length: int | None = Field(
        default=None,
        ge=16,
        description="Context tokens; longer requests are cut from the left. null: the model's.",
    )
    apply_chat_template: bool = Field(
        default=False,
        description="Wrap each question in the chat template (few-shot examples become earlier "
        "turns). Off by default, as published CMMLU/C-Eval scores are measured.",
    )
    system_instruction: str | None = Field(
        default=None, description="A system prompt for every request (with the chat template)."
    )
    seed: int = Field(default=1234, description="Seed of lm-eval's few-shot sampling and any randomness.")
    log_samples: bool = Field(
        default=False, description="Also keep every request and answer in results.json (large)."
    )
    out_dir: str = Field(
        default="outputs/eval", description="results.json, summary.md, scores.png and the task YAMLs used."
    )

    @field_validator("tasks", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: float | None) -> float | None:
        if value is not None and value > 1 and value != int(value):
            raise ValueError("limit must be a whole count (>= 1) or a share below 1")
        return value

    @model_validator(mode="after")
    def _unique(self) -> EvalConfig:
        names = [t.name for t in self.tasks]
        if not names:
            raise ValueError("tasks: list at least one task")
        if len(set(names)) != len(names):
            raise ValueError(f"tasks: each task once, got {names}")
        if self.compare and not self.compare_adapters:
            raise ValueError("compare: true needs compare_adapters")
        if "base" in self.compare_adapters:
            raise ValueError("compare_adapters: 'base' names the bare base run; pick another name")
        return self

    def lm_eval_limit(self) -> int | float | None:
        """`limit` as lm-eval reads it: an int is a count, a float below 1 a share."""
        if self.limit is None or self.limit < 1:
            return self.limit
        return int(self.limit)

    def runs(self) -> dict[str, str | None]:
        """Run name -> adapter folder (None: the bare base), in evaluation order."""
        if self.compare:
            return {"base": None, **self.compare_adapters}
        if self.peft_adapter is None:
            return {"base": None}
        return {Path(self.peft_adapter).name or "adapter": self.peft_adapter}
