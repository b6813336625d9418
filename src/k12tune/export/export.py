"""export_lora: publish a trained stack as one LoRA adapter or as merged weights, checked first.

Steps, for either mode (`adapter.py`, `merged.py`):
1. resolve the stack of `cfg.adapter` on `cfg.model` (an alignment adapter trained on the
   merged SFT model brings the SFT adapter along) and refuse what cannot be exported exactly;
2. load the base in float32 with every adapter applied unmerged and take the reference logits
   (`check.py`), then write the export into a staging folder inside `out_root` from that same
   model (combine or copy the adapters; or merge them, cast and save shards), so only one copy
   of the weights is in memory at a time;
3. copy the tokenizer, reload the staged export as its users will and compare its logits with
   the reference: on failure a DataError is raised and the staging folder removed, so nothing
   is published;
4. write the card (README.md), put the folder in place of any older export by renames
   (`files.replace_folder`), and write `manifest.json` last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from k12tune.atomic import staging_dir
from k12tune.config.export import ExportConfig
from k12tune.export.adapter import check_combinable, write_adapter
from k12tune.export.card import find_scores, model_card
from k12tune.export.check import (
    CheckResult,
    Reference,
    compare,
    encode_prompts,
    forward_logits,
    raise_if_failed,
    reference_logits,
    reload_export,
    saved_dtype,
)
from k12tune.export.files import CARD, copy_tokenizer, file_names, replace_folder
from k12tune.export.merged import QLORA_NOTE, write_merged
from k12tune.export.source import export_stack, target_folder
from k12tune.manifest import write_manifest
from k12tune.stack import (
    Stack,
    default_device,
    load_stack,
    load_stack_tokenizer,
    release_memory,
    weight_hashes,
)

log = logging.getLogger(__name__)

STAGE = "export_lora"
LIBRARIES = ("torch", "transformers", "peft", "safetensors")

Writer = Callable[[ExportConfig, Stack, Any, Path], dict[str, Any]]
WRITERS: dict[str, Writer] = {"adapter": write_adapter, "merged": write_merged}


def stage_export(
    cfg: ExportConfig, stack: Stack, device: str, inputs: list[Any], staging: Path
) -> tuple[Reference, dict[str, Any]]:
    """The trained model's reference logits, and the export written into `staging` from that
    same model (one load of the base for both)."""
    import torch

    model = load_stack(stack, torch.float32, device, merge=False)
    reference = reference_logits(model, stack, inputs)
    return reference, WRITERS[cfg.mode](cfg, stack, model, staging)


def check_staged(
    cfg: ExportConfig, reference: Reference, inputs: list[Any], staging: Path, device: str
) -> CheckResult:
    exported = forward_logits(reload_export(cfg, staging, device), inputs)
    return compare(reference, exported, saved_dtype(cfg), cfg.check.tolerance)


def export_lora(cfg: ExportConfig) -> dict[str, Any]:
    stack = export_stack(cfg)
    if cfg.mode == "adapter":
        check_combinable(stack)
    target = target_folder(cfg, stack)
    device = default_device(cfg.device)
    if stack.trained_4bit:
        log.warning("%s: %s", stack.describe(), QLORA_NOTE)
    inputs = encode_prompts(load_stack_tokenizer(stack), cfg.check.prompts)
    log.info("exporting %s (%s mode) to %s", stack.describe(), cfg.mode, target)
    with staging_dir(Path(cfg.out_root)) as staging:
        reference, written = stage_export(cfg, stack, device, inputs, staging)
        release_memory()
        written["tokenizer"] = copy_tokenizer(stack.adapters[-1].folder, staging)
        result = check_staged(cfg, reference, inputs, staging, device)
        release_memory()
        log.info("export check: %s", result.counts())
        raise_if_failed(result, target)
        for label in result.unconfirmed():
            log.warning("export check: %s is within the tolerance of the trained model: not confirmed", label)
        scores = find_scores(cfg.eval_dir, stack)
        counts = {
            "mode": cfg.mode,
            "stack": stack.describe(),
            "adapters": [str(a.folder) for a in stack.adapters],
            "trained_4bit": stack.trained_4bit,
            **written,
            "check": result.counts(),
            "eval": scores[1],
        }
        (staging / CARD).write_text(model_card(cfg, stack, target, counts, scores), encoding="utf-8")
        replace_folder(staging, target)
    write_manifest(
        target,
        stage=STAGE,
        config=cfg.model_dump(mode="json"),
        inputs=weight_hashes(stack),
        outputs=file_names(target),
        counts=counts,
        libraries=LIBRARIES,
    )
    return {"target": str(target), "counts": counts, "files": file_names(target)}


def summarise(cfg: ExportConfig, summary: dict[str, Any], seconds: float) -> str:
    counts, check = summary["counts"], summary["counts"]["check"]
    what = (
        f"one adapter of rank {counts['rank']} ({counts['how']})"
        if counts["mode"] == "adapter"
        else f"merged {counts['dtype']} weights in {len(counts['shards'])} shard(s)"
    )
    lines = [
        f"export_lora finished in {seconds:.0f} s: {what}",
        f"  stack: {counts['stack']}",
        f"  written: {summary['target']}/ ({', '.join(summary['files'])}, manifest.json)",
        f"  check: max |export - reference| logit {check['max_abs_diff']:.3g} <= tolerance "
        f"{check['tolerance']:.3g} over {check['prompts']} prompts, {check['positions']} positions "
        f"(max |reference| {check['reference_scale']:.3g}, adapter effect {check['adapter_effect']:.3g})",
        f"  eval scores in the card: {counts['eval']}",
    ]
    if check["unconfirmed"]:
        lines.append(f"  not confirmed (within the tolerance): {', '.join(check['unconfirmed'])}")
    if counts["trained_4bit"]:
        lines.append(f"  note: {QLORA_NOTE}")
    return "\n".join(lines)
