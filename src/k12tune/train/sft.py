"""train_sft: LoRA / QLoRA fine-tuning of the base on `data_proc/sft_train.jsonl` with TRL.

Loss is on assistant tokens only: TRL swaps Qwen2.5's template for its training variant with
`{% generation %}` markers (it recognises the template by its exact text), so system, user and
the injected default system prompt are masked to -100 while each answer and its `<|im_end|>`
carry loss. Conversations are packed best-fit-decreasing into rows of `max_length` without
padding; position ids restart per conversation, which keeps them apart in attention.

Outputs in `out_dir`: the adapter (`adapter_model.safetensors`, `adapter_config.json`), the
tokenizer, `config.yaml` (the resolved config), `train_log.jsonl`, `loss_curve.png`, then
`manifest.json` last; checkpoints in `checkpoint-N/` beside them, TensorBoard logs in `runs/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k12tune.config.sft import SFTConfig
from k12tune.train.model import load_base, load_tokenizer, lora_config, use_bf16
from k12tune.train.runlog import TRAIN_LOG, make_log_callback
from k12tune.train.runner import Built, check_inputs, common_args, summary_lines, train_and_publish
from k12tune.train.speed import speed_args

STAGE = "train_sft"


def load_conversations(path: Path) -> Any:
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train").select_columns(["messages"])


def trainer_args(cfg: SFTConfig, out: Path, *, bf16: bool, has_val: bool) -> Any:
    from trl import SFTConfig as TRLConfig

    return TRLConfig(
        **common_args(cfg, out, bf16=bf16, has_val=has_val),
        **speed_args(cfg.train),
        max_length=cfg.data.max_length,
        packing=cfg.data.packing,
        packing_strategy="bfd",
        train_sampling_strategy="random" if cfg.data.packing else "group_by_length",
        assistant_only_loss=True,
    )


def make_trainer(
    cfg: SFTConfig,
    model: Any,
    tokenizer: Any,
    train: Any,
    val: Any = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """The stage's `SFTTrainer` around an already loaded base (the benchmark builds its own)."""
    from trl import SFTTrainer

    return SFTTrainer(
        model=model,
        args=trainer_args(cfg, Path(cfg.out_dir), bf16=use_bf16(cfg.train), has_val=val is not None),
        train_dataset=train,
        eval_dataset=val,
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora),
        callbacks=callbacks,
    )


def build_trainer(cfg: SFTConfig) -> tuple[Any, list[Path]]:
    """The configured `SFTTrainer` (model loaded, adapter attached, data tokenized) and the data
    files it reads."""
    files = check_inputs(cfg)
    tokenizer = load_tokenizer(cfg.model)
    model = load_base(cfg.model, cfg.train, bf16=use_bf16(cfg.train))
    train = load_conversations(files[0])
    val = load_conversations(files[1]) if len(files) > 1 else None
    if val is not None and len(val) == 0:
        val = None
    callbacks = [make_log_callback(Path(cfg.out_dir) / TRAIN_LOG)]
    return make_trainer(cfg, model, tokenizer, train, val, callbacks), files


def run_sft(cfg: SFTConfig) -> tuple[Any, dict[str, Any]]:
    """Train and publish; returns the trainer (its model is the trained PeftModel) and a summary."""

    def build() -> Built:
        trainer, files = build_trainer(cfg)
        return Built(trainer, files)

    return train_and_publish(
        cfg, stage=STAGE, out_dir=cfg.out_dir, title=f"SFT of {cfg.model.base}", build=build
    )


def train_sft(cfg: SFTConfig) -> dict[str, Any]:
    return run_sft(cfg)[1]


def summarise(cfg: SFTConfig, summary: dict[str, Any], seconds: float) -> str:
    return "\n".join(summary_lines(STAGE, cfg.out_dir, summary, seconds))
