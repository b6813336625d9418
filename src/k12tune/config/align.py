"""The alignment stages' configs (`configs/orpo.yaml`, `configs/dpo.yaml`).

Both stages share the base model, the start point (the SFT adapter), the LoRA adapter, the
preference data and the optimisation schedule; each adds its own loss section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from k12tune.config.loader import StrictModel
from k12tune.config.train import LoraSettings, ModelConfig, TrainSettings


class StartPoint(StrictModel):
    sft_adapter: str | None = Field(
        default="outputs/sft",
        description="The train_sft output folder whose adapter is the starting policy; null: "
        "start from the bare base.",
    )
    mode: Literal["auto", "merge", "continue"] = Field(
        default="auto",
        description="merge: fold the SFT adapter into the base in memory, then train a fresh "
        "alignment LoRA (the DPO reference is then exactly the SFT policy, with no second copy "
        "of the weights); continue: keep training the SFT adapter itself (DPO keeps a frozen "
        "copy of that adapter as the reference); auto: merge on a 16-bit base, continue on a "
        "4-bit one (merging into NF4 weights rounds the update away).",
    )


class PrefData(StrictModel):
    train_file: str = Field(
        default="data_proc/pref_train.jsonl", description="Training pairs (prepare_data)."
    )
    val_file: str | None = Field(
        default="data_proc/pref_val.jsonl", description="Validation pairs; null: no evaluation."
    )
    max_length: int = Field(
        default=2048, ge=16, description="Tokens of prompt + answer; longer answers are cut at the end."
    )
    min_answer_tokens: int = Field(
        default=32,
        ge=1,
        description="Pairs whose prompt leaves fewer tokens than this for the answers are dropped "
        "(counted, and listed in rejected_pairs.jsonl): cut to nothing, an answer gives no "
        "preference signal and ORPO's loss turns NaN.",
    )
    prefer_chinese_ratio: float | None = Field(
        default=0.7,
        ge=0,
        le=1,
        description="Share of Chinese (lang: zh) pairs in each epoch fed to the trainer, drawn by "
        "the data stage's MixedBucketSampler (length buckets spread evenly, reshuffled every "
        "epoch); null: plain random order.",
    )
    when_exhausted: Literal["stop", "cycle", "continue"] = Field(
        default="stop",
        description="When one language runs out within an epoch: stop (exact ratio; the epoch "
        "ends there and the rest of the longer pool waits for later epochs' reshuffles), cycle "
        "(exact ratio; the short pool repeats), continue (every pair once; the ratio then "
        "holds only until the short pool ends).",
    )
    padding_free: bool = Field(
        default=False,
        description="true: each batch's sequences (prompt + chosen, prompt + rejected) are laid "
        "end to end in one row with no pad tokens; position ids restarting at 0 keep them apart "
        "(a block-diagonal attention mask with sdpa, varlen kernels with flash_attention_2), so "
        "no compute goes to padding. Same losses and gradients as the padded batch. DPO: sigmoid "
        "loss only. Off by default until the GPU benchmark (issue 9) decides.",
    )


class ORPOSettings(StrictModel):
    beta: float = Field(
        default=0.2,
        gt=0,
        description="Weight of the odds-ratio term against the NLL term (lambda in the paper).",
    )
    length_penalty: float = Field(
        default=0.02,
        ge=0,
        description="Per completion token of length difference (chosen minus rejected), credited "
        "to the odds-ratio margin before the log-sigmoid, as in length-regularised DPO: a pair "
        "the chosen answer wins by being longer teaches the model less. 0: plain ORPO.",
    )


class DPOSettings(StrictModel):
    beta: float = Field(
        default=0.2, gt=0, description="DPO temperature: how far the policy may move from the reference."
    )
    reference_free: bool = Field(
        default=False,
        description="true: the reference log-probabilities are taken as zero, so the loss depends "
        "on the policy alone (no reference forward at all).",
    )
    precompute_ref_log_probs: bool = Field(
        default=False,
        description="Compute the reference log-probabilities once before training (one extra "
        "pass) instead of a reference forward at every step.",
    )


class AlignConfig(StrictModel):
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model.")
    start: StartPoint = Field(default_factory=StartPoint, description="Starting policy.")
    lora: LoraSettings = Field(
        default_factory=LoraSettings, description="Alignment LoRA (unused with start.mode continue)."
    )
    data: PrefData = Field(default_factory=PrefData, description="Preference pairs.")
    train: TrainSettings = Field(
        default_factory=lambda: TrainSettings(
            epochs=1,
            learning_rate=5e-5,
            per_device_batch_size=1,
            gradient_accumulation_steps=16,
            warmup_ratio=0.1,
        ),
        description="Optimisation.",
    )
    out_dir: str = Field(default="outputs/align", description="Adapter, tokenizer, logs and checkpoints.")
    gpu_memory_gb: float = Field(
        default=24, gt=0, description="Memory of one GPU; the dry run checks the estimate against it."
    )


class ORPOConfig(AlignConfig):
    orpo: ORPOSettings = Field(default_factory=ORPOSettings, description="ORPO loss.")


class DPOConfig(AlignConfig):
    dpo: DPOSettings = Field(default_factory=DPOSettings, description="DPO loss and reference.")
