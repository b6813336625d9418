"""The policy the alignment stages start from: the base with the SFT adapter.

Two ways (`start.mode`), chosen by what the base is stored in:
- merge (default on a 16-bit base): the SFT adapter is folded into the base weights in memory
  and a fresh alignment LoRA is trained on top. The policy starts exactly at the SFT model, and
  DPO's reference is that same model with the alignment adapter disabled: no second copy of the
  weights, no adapter copy. The published adapter then applies to base + SFT (export merges both).
- continue (default on a 4-bit base): the SFT adapter itself is loaded trainable and trained
  further. Merging into NF4 weights would re-quantise them and round most of the SFT update
  away, so QLoRA keeps the adapter separate. DPO keeps a frozen copy of the SFT adapter as the
  reference (TRL's "ref" adapter: adapter-sized, not model-sized). The published adapter is then
  a complete SFT + alignment adapter on the bare base.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from k12tune.config.align import AlignConfig
from k12tune.errors import ConfigError
from k12tune.manifest import verify_manifest
from k12tune.train.model import load_base, lora_config

log = logging.getLogger(__name__)


def start_mode(cfg: AlignConfig) -> str:
    """`none` (bare base), `merge` or `continue`."""
    if cfg.start.sft_adapter is None:
        return "none"
    if cfg.start.mode == "auto":
        return "continue" if cfg.model.quantization == "4bit" else "merge"
    return cfg.start.mode


def check_sft_adapter(cfg: AlignConfig) -> Path | None:
    """The SFT output folder, after checking that train_sft finished it for the same base."""
    if cfg.start.sft_adapter is None:
        return None
    folder = Path(cfg.start.sft_adapter)
    if not (folder / "adapter_config.json").is_file():
        raise ConfigError(
            f"start.sft_adapter: {folder} holds no adapter: run `k12tune train_sft --dry-run false` "
            "first, or set start.sft_adapter=null to align the bare base"
        )
    verify_manifest(folder, "train_sft")
    trained_on = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))["model"]["base"]
    if trained_on != cfg.model.base:
        raise ConfigError(
            f"start.sft_adapter: {folder} was trained on {trained_on!r}, but model.base is "
            f"{cfg.model.base!r}: an adapter only fits the base it was trained on"
        )
    return folder


def load_policy(cfg: AlignConfig, folder: Path | None, *, bf16: bool) -> tuple[Any, Any, str]:
    """(model, peft_config for a new adapter or None, a one-line description); `folder` is the
    checked SFT output (`check_sft_adapter`)."""
    mode = start_mode(cfg)
    model = load_base(cfg.model, cfg.train, bf16=bf16)
    if folder is None:
        return model, lora_config(cfg.lora), f"{cfg.model.base} + a fresh LoRA"
    from peft import PeftModel

    if mode == "merge":
        if cfg.model.quantization == "4bit":
            log.warning("start.mode merge on a 4-bit base re-quantises the merged weights (lossy)")
        merged = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
        return merged, lora_config(cfg.lora), f"{cfg.model.base} with {folder} merged + a fresh LoRA"
    policy = PeftModel.from_pretrained(model, str(folder), is_trainable=True)
    if cfg.train.gradient_checkpointing:
        policy.enable_input_require_grads()
    return policy, None, f"{cfg.model.base} + {folder} trained further"
