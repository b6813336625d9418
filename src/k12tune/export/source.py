"""What an export reads and where it writes: the adapter stack on the configured base, and the
target folder. Shared by the run and the dry run, so it imports nothing heavy."""

from __future__ import annotations

from pathlib import Path

from k12tune.config.export import ExportConfig
from k12tune.stack import Stack, resolve_stack_on


def export_stack(cfg: ExportConfig) -> Stack:
    """The stack trained into `cfg.adapter`, on `cfg.model` (its revision, attention kernel and
    16-bit loading), after checking the adapter was trained on that base."""
    return resolve_stack_on(cfg.adapter, cfg.model)


def method(stack: Stack) -> str:
    """sft, dpo or orpo: the stage that trained the top adapter."""
    return stack.adapters[-1].stage.removeprefix("train_")


def export_name(cfg: ExportConfig, stack: Stack) -> str:
    if cfg.name is not None:
        return cfg.name
    return f"k12-{method(stack)}" + ("-merged" if cfg.mode == "merged" else "")


def target_folder(cfg: ExportConfig, stack: Stack) -> Path:
    return Path(cfg.out_root) / export_name(cfg, stack)
