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

import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from k12tune.atomic import publish
from k12tune.config.sft import SFTConfig
from k12tune.errors import ConfigError, DataError
from k12tune.manifest import file_sha256, remove_manifest, verify_manifest, write_manifest
from k12tune.train.checkpoints import resolve_resume
from k12tune.train.model import load_base, load_tokenizer, lora_config, use_bf16
from k12tune.train.runlog import (
    LOSS_CURVE,
    TRAIN_LOG,
    make_log_callback,
    plot_loss_curve,
    read_log,
    trim_log,
)

log = logging.getLogger(__name__)

STAGE = "train_sft"
RESOLVED_CONFIG = "config.yaml"
LIBRARIES: tuple[str, ...] = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")


def check_inputs(cfg: SFTConfig) -> list[Path]:
    """The data files, after checking that prepare_data finished writing them."""
    files = [Path(cfg.data.train_file)] + ([Path(cfg.data.val_file)] if cfg.data.val_file else [])
    for path in files:
        if not path.is_file():
            raise DataError(
                f"{path} does not exist: run `k12tune prepare_data --dry-run false` first, "
                "or point data.train_file / data.val_file at your files"
            )
    verify_manifest(files[0].parent, "prepare_data", check_hashes=False)
    if "tensorboard" in cfg.train.report_to:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError(
                "train.report_to: tensorboard needs its package (pip install tensorboard), "
                "or set train.report_to=[]"
            ) from None
    return files


def load_conversations(path: Path) -> Any:
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train").select_columns(["messages"])


def trainer_args(cfg: SFTConfig, out: Path, *, bf16: bool, has_val: bool) -> Any:
    from trl import SFTConfig as TRLConfig

    t = cfg.train
    return TRLConfig(
        output_dir=str(out),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_batch_size,
        per_device_eval_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        ddp_find_unused_parameters=False,
        bf16=bf16,
        logging_steps=t.logging_steps,
        eval_strategy="steps" if has_val else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        report_to=list(t.report_to) or "none",
        seed=t.seed,
        data_seed=t.seed,
        max_length=cfg.data.max_length,
        packing=cfg.data.packing,
        packing_strategy="bfd",
        train_sampling_strategy="random" if cfg.data.packing else "group_by_length",
        assistant_only_loss=True,
    )


def build_trainer(cfg: SFTConfig) -> tuple[Any, list[Path]]:
    """The configured `SFTTrainer` (model loaded, adapter attached, data tokenized) and the data
    files it reads."""
    from trl import SFTTrainer

    files = check_inputs(cfg)
    out = Path(cfg.out_dir)
    bf16 = use_bf16(cfg.train)
    tokenizer = load_tokenizer(cfg.model)
    model = load_base(cfg.model, bf16=bf16, gradient_checkpointing=cfg.train.gradient_checkpointing)
    train = load_conversations(files[0])
    val = load_conversations(files[1]) if len(files) > 1 else None
    if val is not None and len(val) == 0:
        val = None
    trainer = SFTTrainer(
        model=model,
        args=trainer_args(cfg, out, bf16=bf16, has_val=val is not None),
        train_dataset=train,
        eval_dataset=val,
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora),
        callbacks=[make_log_callback(out / TRAIN_LOG)],
    )
    return trainer, files


def run_sft(cfg: SFTConfig) -> tuple[Any, dict[str, Any]]:
    """Train and publish; returns the trainer (its model is the trained PeftModel) and a summary."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_manifest(out)
    resume = resolve_resume(cfg.train.resume, out)
    log_path = out / TRAIN_LOG
    if resume is None:
        log_path.unlink(missing_ok=True)
    else:
        step = int(resume.name.rsplit("-", 1)[1])
        log.info("resuming from %s (step %d)", resume, step)
        trim_log(log_path, step)
    trainer, files = build_trainer(cfg)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    staging = out / ".staging"
    if trainer.is_world_process_zero():
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))  # every rank: ZeRO-3 gathers the adapter here
    summary = {
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "train_records": len(trainer.train_dataset),
        "resumed_from": str(resume) if resume else None,
        "bf16": trainer.args.bf16,
    }
    if trainer.is_world_process_zero():
        # training_args.bin is a pickle; the resolved config.yaml says the same in plain text.
        (staging / "training_args.bin").unlink(missing_ok=True)
        (staging / RESOLVED_CONFIG).write_text(
            yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        plot_loss_curve(read_log(log_path), staging / LOSS_CURVE, f"SFT of {cfg.model.base}")
        names = sorted(p.name for p in staging.iterdir() if p.is_file())
        publish(staging, out, names)
        shutil.rmtree(staging, ignore_errors=True)
        write_manifest(
            out,
            stage=STAGE,
            config=cfg.model_dump(mode="json"),
            inputs={str(p): file_sha256(p) for p in files},
            outputs=[*names, TRAIN_LOG],
            counts=summary,
            libraries=LIBRARIES,
        )
    return trainer, summary


def train_sft(cfg: SFTConfig) -> dict[str, Any]:
    return run_sft(cfg)[1]


def summarise(cfg: SFTConfig, summary: dict[str, Any], seconds: float) -> str:
    out = Path(cfg.out_dir)
    resumed = f", resumed from {summary['resumed_from']}" if summary["resumed_from"] else ""
    return "\n".join(
        [
            f"train_sft finished in {seconds:.0f} s: {summary['global_step']} optimizer steps, "
            f"mean training loss {summary['train_loss']:.4f}{resumed}",
            f"  adapter and tokenizer: {out}",
            f"  log: {out / TRAIN_LOG}; loss curve: {out / LOSS_CURVE}; TensorBoard: {out / 'runs'}",
        ]
    )
