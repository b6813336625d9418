"""The SFT stage's config (`configs/sft.yaml`)."""

from __future__ import annotations

from pydantic import Field

from k12tune.config.loader import StrictModel
from k12tune.config.train import LoraSettings, ModelConfig, TrainSettings


class SFTData(StrictModel):
    train_file: str = Field(
        default="data_proc/sft_train.jsonl", description="Training records (prepare_data)."
    )
    val_file: str | None = Field(
        default="data_proc/sft_val.jsonl", description="Validation records; null: no evaluation."
    )
    max_length: int = Field(default=2048, ge=16, description="Tokens per sequence (longer ones are cut).")
    packing: bool = Field(
        default=True,
        description="Pack conversations into rows of max_length without padding (best-fit "
        "decreasing). The attention keeps them apart (position ids restart per conversation). "
        "false: one conversation per row, padded within length-grouped batches.",
    )


class SFTConfig(StrictModel):
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA adapter.")
    data: SFTData = Field(default_factory=SFTData, description="Training data.")
    train: TrainSettings = Field(default_factory=TrainSettings, description="Optimisation.")
    out_dir: str = Field(default="outputs/sft", description="Adapter, tokenizer, logs and checkpoints.")
    gpu_memory_gb: float = Field(
        default=24, gt=0, description="Memory of one GPU; the dry run checks the estimate against it."
    )
