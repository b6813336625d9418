"""`export_lora`'s config (`configs/export.yaml`): which trained adapter to publish, how, and how
the published copy is checked against the model that was trained."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from k12tune.config.loader import StrictModel
from k12tune.config.train import ModelConfig

# Short school questions of several subjects; rendered with the chat template they give a few
# hundred positions at which every logit is compared.
DEFAULT_PROMPTS: tuple[str, ...] = (
    "小明有5个苹果，吃掉2个后还剩几个？",
    "什么是光合作用？请用小学生能听懂的话解释。",
    "请解释勾股定理，并举一个例子。",
    "“床前明月光”的下一句是什么？",
)

# The sizes `save_pretrained` accepts: whole numbers with a byte unit (a lower-case `b` would
# mean bits there, so it is not allowed).
SHARD_SIZE = re.compile(r"^[1-9][0-9]*(KB|MB|GB|KiB|MiB|GiB)$")


class CheckSettings(StrictModel):
    prompts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROMPTS),
        description="User questions, each rendered with the tokenizer's chat template (generation "
        "prompt added); the export's logits are compared with base + adapter's at every position.",
    )
    tolerance: float | None = Field(
        default=None,
        gt=0,
        description="Largest allowed max |export - reference| logit. null: 1e-3 for float32 "
        "weights (adapter mode, or merged float32); max(1e-3, 0.1 x max |reference logit|) for "
        "merged bfloat16, 0.03 x for float16 (k12tune.export.check gives the measurements).",
    )

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, value: list[str]) -> list[str]:
        if not value or any(not p.strip() for p in value):
            raise ValueError("list at least one prompt, none of them empty")
        return value


class ExportConfig(StrictModel):
    model: ModelConfig = Field(
        default_factory=ModelConfig,
        description="The base model; the adapter must have been trained on this model.base. It is "
        "always loaded in 16/32-bit: a QLoRA adapter is merged into (and checked on) the 16-bit "
        "base, as merging into 4-bit weights would round the update away.",
    )
    adapter: str = Field(
        default="outputs/align",
        description="A train_sft, train_orpo or train_dpo output folder; an alignment adapter "
        "trained on the merged SFT model brings that SFT adapter along.",
    )
    mode: Literal["adapter", "merged"] = Field(
        default="adapter",
        description="adapter: one LoRA adapter on the bare base (two stacked adapters are "
        "combined exactly into one) with tokenizer and card; merged: the adapters merged into "
        "the base, saved as safetensors shards loadable without peft (transformers, vLLM).",
    )
    name: str | None = Field(
        default=None,
        description="Folder name under out_root; null: k12-<method> (k12-sft, k12-dpo, k12-orpo), "
        "with -merged appended in merged mode.",
    )
    out_root: str = Field(default="outputs/adapters", description="Where export folders are written.")
    dtype: Literal["bfloat16", "float16", "float32"] = Field(
        default="bfloat16",
        description="Merged mode: dtype of the saved weights (merging itself is done in float32). "
        "Adapter mode keeps the adapter's own float32 weights.",
    )
    max_shard_size: str = Field(
        default="5GB", description="Merged mode: largest safetensors shard (KB, MB, GB, KiB, MiB, GiB)."
    )
    device: str = Field(
        default="cpu",
        description="Where the base is loaded (in float32) to merge and check: cpu, cuda, cuda:1; "
        "auto: cuda when available. A 7B base in float32 takes ~31 GB, more than a 24 GB GPU.",
    )
    eval_dir: str | None = Field(
        default="outputs/eval",
        description="A finished eval_harness output: its scores go into the card when one of its "
        "runs evaluated exactly this stack; null: no scores.",
    )
    check: CheckSettings = Field(
        default_factory=CheckSettings, description="The logit check run on the export before publishing."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value != Path(value).name or value.startswith(".")):
            raise ValueError("name must be a plain folder name (no '/', not starting with '.')")
        return value

    @field_validator("max_shard_size")
    @classmethod
    def _shard_size(cls, value: str) -> str:
        if not SHARD_SIZE.match(value):
            raise ValueError("max_shard_size must be a whole number with a unit, e.g. 5GB, 500MB or 2GiB")
        return value

    @model_validator(mode="after")
    def _sixteen_bit(self) -> ExportConfig:
        if self.model.quantization != "none":
            raise ValueError(
                "model.quantization must be none: export loads the 16-bit base (a QLoRA adapter "
                "is merged into the bf16 base, never into 4-bit weights, which would round the "
                "update away); the adapter's own config still says it was trained in 4-bit"
            )
        return self

    @property
    def out_dir(self) -> str:
        """The folder the CLI names before the run: the export folder when `name` is set, else
        out_root (the derived name needs the adapter's manifest)."""
        return str(Path(self.out_root) / self.name) if self.name else self.out_root
