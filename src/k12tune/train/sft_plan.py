"""`train_sft`'s dry run: data, batching, steps and memory, from a sample; no model is loaded."""

from __future__ import annotations

import math
from pathlib import Path

from k12tune.config.sft import SFTConfig
from k12tune.train.plan import (
    TokenCounter,
    count_lines,
    memory_lines,
    padding_share,
    sample_records,
    schedule_line,
    step_plan,
)


def sft_plan(cfg: SFTConfig, sample_size: int = 2000) -> str:
    d, t = cfg.data, cfg.train
    lines = ["train_sft plan (dry run: no model is loaded, nothing is written)"]
    method = "QLoRA, 4-bit NF4 base" if cfg.model.quantization == "4bit" else "LoRA, 16-bit base"
    lines.append(
        f"base: {cfg.model.base} ({method}); "
        f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} dropout={cfg.lora.dropout} "
        f"on {', '.join(cfg.lora.target_modules)}"
    )
    train = Path(d.train_file)
    if not train.is_file():
        lines.append(f"data: {train} not found: run `k12tune prepare_data --dry-run false` first")
        lines += memory_lines(cfg.model, cfg.lora, t, d.max_length, cfg.gpu_memory_gb)
        return "\n".join(lines)
    records = count_lines(train)
    val = Path(d.val_file) if d.val_file else None
    val_records = count_lines(val) if val is not None and val.is_file() else 0
    counter = TokenCounter(cfg.model)
    sample = [counter(r["messages"]) for r in sample_records(train, sample_size)]
    kept = [min(n, d.max_length) for n in sample]
    mean = sum(sample) / len(sample) if sample else 0.0
    truncated = sum(n > d.max_length for n in sample) / len(sample) if sample else 0.0
    how = (
        "counted with the base's tokenizer"
        if counter.exact
        else "estimated from characters (no tokenizer on disk)"
    )
    lines.append(
        f"data: {records:,} training records ({train}), {val_records:,} val; tokens per record from a "
        f"sample of {len(sample):,}, {how}: mean {mean:.0f}, max {max(sample, default=0)}; "
        f"{truncated:.1%} longer than max_length {d.max_length} (cut)"
    )
    if d.packing:
        # Best-fit decreasing fills rows almost completely; rows are not padded at all.
        tokens = sum(kept) / len(kept) * records if kept else 0.0
        rows = math.ceil(tokens / d.max_length)
        lines.append(
            f"batching: packed into ~{rows:,} rows of {d.max_length} tokens, padding-free (padding share 0%)"
        )
        if t.per_device_batch_size > 1 and cfg.model.attn_implementation != "flash_attention_2":
            lines.append(
                f"  note: a micro-batch's {t.per_device_batch_size} packed rows are joined into one sequence "
                f"whose {cfg.model.attn_implementation} mask is dense: attention costs grow with the square "
                "of the rows; train.per_device_batch_size=1 with more accumulation (or "
                "model.attn_implementation=flash_attention_2) avoids it"
            )
    else:
        rows = records
        share = padding_share(kept, t.per_device_batch_size)
        lines.append(
            f"batching: one conversation per row, length-grouped batches of {t.per_device_batch_size}; "
            f"padding share {share:.1%} of the tokens"
        )
    plan = step_plan(records, rows, t)
    lines.append(schedule_line(plan, t))
    lines += memory_lines(cfg.model, cfg.lora, t, d.max_length, cfg.gpu_memory_gb)
    lines.append(
        f"outputs: {cfg.out_dir}/ (adapter, tokenizer, config.yaml, train_log.jsonl, loss_curve.png, "
        "manifest.json last; checkpoint-N/ every "
        f"{t.save_steps} steps, {t.save_total_limit} kept; resume: {t.resume})"
    )
    return "\n".join(lines)
