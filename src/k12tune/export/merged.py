"""Merged mode: the stack's adapters folded into the base weights, saved as safetensors shards
that plain transformers and vLLM load without peft.

The base is loaded in float32 (an exact copy of bf16 weights), every adapter is merged at once
(their updates add up, as training stacked them), and the sum is rounded once to the saved
dtype: rounding the base first and adding the update in 16 bits would round twice. A QLoRA
adapter is merged into this 16-bit base, never into 4-bit weights, which would re-quantise the
merged weights and lose most of the update (huggingface/peft#2321).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from k12tune.config.export import ExportConfig
from k12tune.errors import DataError
from k12tune.stack import Stack

QLORA_NOTE = (
    "the QLoRA adapter, trained on the 4-bit (NF4) base, is applied to the 16-bit base here: "
    "merging into 4-bit weights would round the update away (huggingface/peft#2321), so the "
    "export's logits differ slightly from the 4-bit model's used in training"
)


def write_merged(cfg: ExportConfig, stack: Stack, model: Any, staging: Path) -> dict[str, Any]:
    """Merge the adapters active in `model` (a float32 PeftModel) and save the result."""
    import torch

    merged = model.merge_and_unload(adapter_names=list(model.peft_config))
    merged.to(getattr(torch, cfg.dtype))
    merged.save_pretrained(staging, max_shard_size=cfg.max_shard_size)
    config = orjson.loads((staging / "config.json").read_bytes())
    if "quantization_config" in config:
        raise DataError(
            f"{cfg.model.base} is a quantised checkpoint (its config has a quantization_config): "
            "merged mode needs the 16-bit base; use mode: adapter"
        )
    shards = sorted(p.name for p in staging.glob("*.safetensors"))
    return {"shards": shards, "dtype": cfg.dtype, "parameters": merged.num_parameters()}
