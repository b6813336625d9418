"""Config sections shared by the training stages (SFT now, ORPO/DPO next): the base model, the
LoRA adapter, the optimisation schedule and the output folder."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from k12tune.config.loader import StrictModel

ALL_LINEAR: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ModelConfig(StrictModel):
    base: str = Field(
        default="Qwen/Qwen2.5-7B-Instruct", description="Hub id or local folder of the base model."
    )
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit) to pin.")
    trust_remote_code: bool = Field(
        default=False,
        description="Run model code shipped with the checkpoint (Qwen2.5 needs none).",
    )
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = Field(
        default="sdpa",
        description="Attention kernel. sdpa keeps packed sequences apart and needs no extra package.",
    )
    quantization: Literal["none", "4bit"] = Field(
        default="none",
        description="4bit: QLoRA (NF4 base, double quantisation, bf16 compute; needs a CUDA GPU).",
    )


class LoraSettings(StrictModel):
    r: int = Field(default=16, ge=1, description="LoRA rank.")
    alpha: int = Field(default=16, ge=1, description="LoRA alpha (the update is scaled by alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: list[str] = Field(
        default_factory=lambda: list(ALL_LINEAR),
        description="Linear layers that get an adapter (default: every attention and MLP projection).",
    )


class TrainSettings(StrictModel):
    epochs: float = Field(default=2.0, gt=0, description="Passes over the training file.")
    max_steps: int = Field(default=-1, description="Stop after this many optimizer steps (-1: use epochs).")
    per_device_batch_size: int = Field(default=2, ge=1, description="Sequences (or packs) per GPU per step.")
    gradient_accumulation_steps: int = Field(default=8, ge=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(default=2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = Field(
        default="cosine", description="Schedule after the warm-up."
    )
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping norm.")
    gradient_checkpointing: bool = Field(
        default=True, description="Recompute activations in backward: far less memory, ~30% slower."
    )
    activation_offload: bool = Field(
        default=False,
        description="With gradient_checkpointing: TRL's activation offloading keeps each layer's "
        "checkpointed input in pinned host memory until backward needs it, copied on a side CUDA "
        "stream (activation memory then barely grows with depth; needs a CUDA GPU).",
    )
    liger_kernels: bool = Field(
        default=False,
        description="Liger-Kernel's Triton RMSNorm, RoPE and SwiGLU (needs a CUDA GPU and the "
        "liger-kernel package). The loss is already chunked: TRL's fused LM head never builds the "
        "full logits.",
    )
    torch_compile: bool = Field(
        default=False, description="torch.compile the model (the first steps pay the compilation)."
    )
    bf16: Literal["auto", "true", "false"] = Field(
        default="auto", description="bf16 mixed precision; auto: when the GPU supports it."
    )
    logging_steps: int = Field(default=10, ge=1, description="Log the loss every N optimizer steps.")
    eval_steps: int = Field(default=200, ge=1, description="Evaluate on val every N steps.")
    save_steps: int = Field(default=200, ge=1, description="Checkpoint every N steps.")
    save_total_limit: int = Field(default=3, ge=1, description="Checkpoints kept (oldest deleted).")
    resume: str = Field(
        default="auto",
        description="auto: continue from the last complete checkpoint in out_dir if any; "
        "never: start fresh; or a checkpoint folder.",
    )
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=lambda: ["tensorboard"], description="Experiment trackers (wandb needs its package)."
    )
    seed: int = Field(default=42, description="Seed of data order, dropout and adapter init.")

    @model_validator(mode="after")
    def _offload_needs_checkpointing(self) -> TrainSettings:
        if self.activation_offload and not self.gradient_checkpointing:
            raise ValueError(
                "activation_offload: true needs gradient_checkpointing: true (without checkpointing "
                "every activation would cross to the CPU and back at every step)"
            )
        return self

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("max_steps must be -1 (use epochs) or a positive number of steps")
        return value
