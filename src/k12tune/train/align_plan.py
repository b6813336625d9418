"""The dry run of train_orpo and train_dpo: pairs by language, token lengths from a sample, the
epoch the language mix yields, steps, and peak memory with the reference counted per mode.
No torch, transformers or trl is imported and no model is loaded (see `plan.py`)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson

from k12tune.config.align import AlignConfig, DPOConfig, ORPOConfig
from k12tune.config.train import LoraSettings
from k12tune.data.mix import MixedBucketSampler
from k12tune.train.memory import GIB, lora_params
from k12tune.train.plan import (
    TokenCounter,
    memory_lines,
    model_shape,
    sample_records,
    schedule_line,
    step_plan,
)

FP32 = 4


def count_langs(path: Path) -> Counter[str]:
    langs: Counter[str] = Counter()
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.strip():
                try:
                    row = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    langs["unreadable"] += 1
                    continue
                langs[str(row.get("lang") or "unknown") if isinstance(row, dict) else "unreadable"] += 1
    return langs


def adapter_settings(cfg: AlignConfig, mode: str) -> LoraSettings:
    """The adapter being trained: the SFT adapter's own shape when it is trained further."""
    config = Path(cfg.start.sft_adapter or "") / "adapter_config.json"
    if mode == "continue" and config.is_file():
        saved = json.loads(config.read_text(encoding="utf-8"))
        targets = saved.get("target_modules") or cfg.lora.target_modules
        return LoraSettings(
            r=saved["r"], alpha=saved.get("lora_alpha", saved["r"]), target_modules=sorted(targets)
        )
    return cfg.lora


def reference_line(cfg: AlignConfig, mode: str, lora: LoraSettings) -> tuple[str, int]:
    """How the reference is obtained and the bytes it holds on the GPU during training."""
    if isinstance(cfg, ORPOConfig):
        return "reference: none (ORPO needs no reference model): +0 GiB", 0
    copy = 0
    if mode == "continue":
        shape, _ = model_shape(cfg.model)
        copy = FP32 * lora_params(shape, lora.r, lora.target_modules) if shape is not None else 0
    held = f"+{copy / GIB:.2f} GiB for the frozen copy of the SFT adapter" if copy else "+0 GiB"
    assert isinstance(cfg, DPOConfig)
    if cfg.dpo.reference_free:
        how = "none: reference-free, log pi_ref taken as 0, no reference forward"
    elif cfg.dpo.precompute_ref_log_probs:
        how = "precomputed in one forward pass over the pairs before training, then not run again"
    elif mode == "continue":
        how = "the SFT adapter's frozen copy, one extra forward (no backward) per step"
    else:
        how = "the policy with the alignment adapter disabled (same weights), one extra forward per step"
    return f"reference: {how}: {held}", copy


def align_plan(cfg: ORPOConfig | DPOConfig, sample_size: int = 2000) -> str:
    from k12tune.train.start import start_mode

    d, t = cfg.data, cfg.train
    is_orpo = isinstance(cfg, ORPOConfig)
    stage = "train_orpo" if is_orpo else "train_dpo"
    mode = start_mode(cfg)
    lora = adapter_settings(cfg, mode)
    lines = [f"{stage} plan (dry run: no model is loaded, nothing is written)"]
    method = "QLoRA, 4-bit NF4 base" if cfg.model.quantization == "4bit" else "LoRA, 16-bit base"
    start = {
        "none": "the bare base + a fresh LoRA",
        "merge": f"base with {cfg.start.sft_adapter} merged in memory + a fresh LoRA",
        "continue": f"{cfg.start.sft_adapter} trained further",
    }[mode]
    lines.append(
        f"base: {cfg.model.base} ({method}); start: {start}; "
        f"LoRA r={lora.r} alpha={lora.alpha} on {', '.join(lora.target_modules)}"
    )
    if is_orpo:
        lines.append(
            f"loss: ORPO, beta {cfg.orpo.beta}, length_penalty {cfg.orpo.length_penalty} per token of "
            "(chosen - rejected) answer length, credited to the log-odds margin; NLL on answer tokens"
        )
    else:
        ref = "reference-free" if cfg.dpo.reference_free else "with reference"
        lines.append(f"loss: DPO (sigmoid), beta {cfg.dpo.beta}, {ref}")
    train = Path(d.train_file)
    ref_text, ref_bytes = reference_line(cfg, mode, lora)
    memory = memory_lines(
        cfg.model,
        lora,
        t,
        d.max_length,
        cfg.gpu_memory_gb,
        sequences_per_item=2,
        reference=ref_bytes,
    )
    if not train.is_file():
        lines.append(f"data: {train} not found: run `k12tune prepare_data --dry-run false` first")
        return "\n".join([*lines, ref_text, *memory])
    langs = count_langs(train)
    val = Path(d.val_file) if d.val_file else None
    val_langs = count_langs(val) if val is not None and val.is_file() else Counter()
    pairs = sum(langs.values())
    lines.append(
        f"data: {pairs:,} training pairs ({train}) by language {dict(sorted(langs.items()))}; "
        f"{sum(val_langs.values()):,} val pairs {dict(sorted(val_langs.items()))}"
    )
    lines.append(length_line(cfg, train, sample_size))
    if d.prefer_chinese_ratio is None:
        per_epoch = pairs
        lines.append("order: random (data.prefer_chinese_ratio: null)")
    else:
        flat = [lang for lang, n in langs.items() for _ in range(n)]
        sampler = MixedBucketSampler(
            flat, [0] * len(flat), zh_ratio=d.prefer_chinese_ratio, when_exhausted=d.when_exhausted
        )
        per_epoch = len(sampler)
        zh = int(sum(sampler.is_zh[sampler.order()]))
        lone = "; WARNING: one language only, the ratio cannot apply" if len(set(flat)) < 2 else ""
        lines.append(
            f"order: prefer_chinese_ratio {d.prefer_chinese_ratio:g} (when_exhausted: {d.when_exhausted}): "
            f"{per_epoch:,} pairs per epoch, {zh:,} of them Chinese ({zh / max(per_epoch, 1):.1%}){lone}"
        )
    plan = step_plan(pairs, per_epoch, t)
    lines.append(schedule_line(plan, t, " pairs"))
    lines += [ref_text, *memory]
    lines.append(
        f"outputs: {cfg.out_dir}/ (adapter, tokenizer, config.yaml, rejected_pairs.jsonl, train_log.jsonl, "
        f"loss_curve.png, manifest.json last; checkpoint-N/ every {t.save_steps} steps, "
        f"{t.save_total_limit} kept; resume: {t.resume})"
    )
    return "\n".join(lines)


def length_line(cfg: ORPOConfig | DPOConfig, train: Path, sample_size: int) -> str:
    d = cfg.data
    counter = TokenCounter(cfg.model)
    prompt, chosen, rejected = [], [], []
    for row in sample_records(train, sample_size):
        p = counter(row["prompt"], add_generation_prompt=True)
        prompt.append(p)
        chosen.append(counter(row["prompt"] + row["chosen"]) - p)
        rejected.append(counter(row["prompt"] + row["rejected"]) - p)
    n = len(prompt)
    if not n:
        return "tokens: the training file is empty"
    how = "counted with the base's tokenizer" if counter.exact else "estimated from characters"
    dropped = sum(p + d.min_answer_tokens > d.max_length for p in prompt)
    cut = sum(p + max(c, r) > d.max_length for p, c, r in zip(prompt, chosen, rejected, strict=True))
    diff = sum(c - r for c, r in zip(chosen, rejected, strict=True)) / n
    text = (
        f"tokens from a sample of {n:,} pairs, {how}: prompt mean {sum(prompt) / n:.0f} (max {max(prompt)}), "
        f"chosen mean {sum(chosen) / n:.0f}, rejected mean {sum(rejected) / n:.0f}; "
        f"{dropped / n:.1%} would be dropped (prompt leaves < {d.min_answer_tokens} of max_length "
        f"{d.max_length}), {cut / n:.1%} cut at max_length"
    )
    if isinstance(cfg, ORPOConfig):
        text += (
            f"; chosen longer by {diff:.0f} tokens on average: mean length shift "
            f"{cfg.orpo.length_penalty * diff:+.2f} on the log-odds margin"
        )
    return text
