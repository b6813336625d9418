"""One training run from start to published folder, shared by every training stage.

The order matters for trust: the old manifest goes first (so a crash leaves no folder that looks
finished), the run resumes from the last complete checkpoint, the adapter and its side files
are written to `.staging/` and moved into place together, and `manifest.json` comes last.

`run.json` names the stage that owns the folder's checkpoints: train_orpo and train_dpo share
`outputs/align/`, and a DPO run must not resume (and republish) an ORPO checkpoint. A fresh
start removes the folder's old `checkpoint-N/`, so a later resume cannot pick up a stranger's.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from k12tune.atomic import atomic_write_bytes, publish
from k12tune.digest import file_digest
from k12tune.errors import ConfigError, DataError
from k12tune.manifest import remove_manifest, verify_manifest, write_manifest
from k12tune.train.checkpoints import resolve_resume
from k12tune.train.runlog import LOSS_CURVE, TRAIN_LOG, plot_curves, read_log, trim_log

log = logging.getLogger(__name__)

RESOLVED_CONFIG = "config.yaml"
RUN_FILE = "run.json"
LIBRARIES: tuple[str, ...] = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")


@dataclass
class Built:
    """What a stage's builder hands the runner: the configured trainer, the input files (hashed
    into the manifest), counts for the summary, and extra files to publish beside the adapter."""

    trainer: Any
    inputs: list[Path]
    counts: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def train_and_publish(
    cfg: Any, *, stage: str, out_dir: str, title: str, build: Callable[[], Built]
) -> tuple[Any, dict[str, Any]]:
    """Train and publish; returns the trainer (its model is the trained PeftModel) and a summary."""
    from accelerate import PartialState

    out = Path(out_dir)
    state = PartialState()
    resume = prepare_folder(cfg, stage, out, main=state.is_main_process)
    state.wait_for_everyone()
    built = build()
    trainer = built.trainer
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
        **built.counts,
    }
    if trainer.is_world_process_zero():
        # training_args.bin is a pickle; the resolved config.yaml says the same in plain text.
        (staging / "training_args.bin").unlink(missing_ok=True)
        (staging / RESOLVED_CONFIG).write_text(
            yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        for name, data in built.files.items():
            (staging / name).write_bytes(data)
        plot_curves(read_log(out / TRAIN_LOG), staging / LOSS_CURVE, title)
        names = sorted(p.name for p in staging.iterdir() if p.is_file())
        publish(staging, out, names)
        shutil.rmtree(staging, ignore_errors=True)
        write_manifest(
            out,
            stage=stage,
            config=cfg.model_dump(mode="json"),
            inputs={str(p): file_digest(p) for p in built.inputs},
            outputs=[*names, TRAIN_LOG],
            counts=summary,
            libraries=LIBRARIES,
        )
    return trainer, summary


def prepare_folder(cfg: Any, stage: str, out: Path, *, main: bool) -> Path | None:
    """Clear the finished marks, decide where to resume from, and trim the log to match; the
    main process writes, the others only read. Returns the checkpoint to resume from."""
    run_file = out / RUN_FILE
    resume = resolve_resume(cfg.train.resume, out)
    if resume is not None and run_file.is_file():
        owner = json.loads(run_file.read_text(encoding="utf-8"))["stage"]
        if owner != stage:
            raise ConfigError(
                f"{out}: its checkpoints belong to a {owner} run; resuming them as {stage} would "
                "publish that run. Set out_dir to another folder, or train.resume=never to start over"
            )
    if not main:
        return resume
    out.mkdir(parents=True, exist_ok=True)
    remove_manifest(out)
    log_path = out / TRAIN_LOG
    if resume is None:
        log_path.unlink(missing_ok=True)
        for old in sorted(out.glob("checkpoint-*")):
            log.info("starting fresh: removing %s", old)
            shutil.rmtree(old)
    else:
        step = json.loads((resume / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
        log.info("resuming from %s (step %d)", resume, step)
        trim_log(log_path, step)
    atomic_write_bytes(run_file, json.dumps({"stage": stage}).encode("utf-8"))
    return resume


def common_args(cfg: Any, out: Path, *, bf16: bool, has_val: bool) -> dict[str, Any]:
    """The TrainingArguments every stage sets the same way from `cfg.train`."""
    t = cfg.train
    return {
        "output_dir": str(out),
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps,
        "per_device_train_batch_size": t.per_device_batch_size,
        "per_device_eval_batch_size": t.per_device_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "gradient_checkpointing": t.gradient_checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "ddp_find_unused_parameters": False,
        "bf16": bf16,
        "logging_steps": t.logging_steps,
        "eval_strategy": "steps" if has_val else "no",
        "eval_steps": t.eval_steps,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "report_to": list(t.report_to) or "none",
        "seed": t.seed,
        "data_seed": t.seed,
    }


def check_inputs(cfg: Any) -> list[Path]:
    """`cfg.data`'s train (and val) files, after checking that prepare_data finished writing
    them, and that the configured tracker can be imported."""
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


def summary_lines(stage: str, out_dir: str, summary: dict[str, Any], seconds: float) -> list[str]:
    out = Path(out_dir)
    resumed = f", resumed from {summary['resumed_from']}" if summary["resumed_from"] else ""
    return [
        f"{stage} finished in {seconds:.0f} s: {summary['global_step']} optimizer steps, "
        f"mean training loss {summary['train_loss']:.4f}{resumed}",
        f"  adapter and tokenizer: {out}",
        f"  log: {out / TRAIN_LOG}; curves: {out / LOSS_CURVE}; TensorBoard: {out / 'runs'}",
    ]
