"""The training stages' dry run: the sampling plan and a peak-memory check, without torch.

Nothing heavy is imported (the test checks that neither torch nor transformers is loaded):
tokens are counted with the `tokenizers` library and the chat template rendered with jinja2 from
the base's own files, when they are on disk (a local folder or the Hugging Face cache); else
they are estimated from characters. Model sizes come from the base's `config.json`, or from
`memory.KNOWN_SHAPES` for the documented bases.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k12tune.config.train import LoraSettings, ModelConfig, TrainSettings
from k12tune.train.memory import GIB, KNOWN_SHAPES, ModelShape, estimate_memory

# Without the tokenizer: Qwen2.5's vocabulary averages about 1.4 Chinese characters and 3.5
# other characters per token on K12 text, plus the chat markup of each message.
_TOKENS_PER_CJK, _TOKENS_PER_OTHER, _TOKENS_PER_MESSAGE = 0.7, 0.3, 5
# Qwen's default system prompt ("You are Qwen, created by Alibaba Cloud. ..."), in tokens.
_DEFAULT_SYSTEM_TOKENS = 20
# HF's LengthGroupedSampler sorts by length within mega-batches of 50 batches.
_MEGABATCH = 50


def base_file(model: ModelConfig, name: str) -> Path | None:
    """A file of the base checkpoint if it is on disk (local folder or HF cache), else None."""
    folder = Path(model.base)
    if folder.is_dir():
        return folder / name if (folder / name).is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model.base, name, revision=model.revision)
    except Exception:  # an unusual id or cache layout: fall back to estimates
        return None
    return Path(found) if isinstance(found, str) else None


def model_shape(model: ModelConfig) -> tuple[ModelShape | None, str]:
    config = base_file(model, "config.json")
    if config is not None:
        return ModelShape.from_config(json.loads(config.read_text(encoding="utf-8"))), str(config)
    if model.base in KNOWN_SHAPES:
        return KNOWN_SHAPES[model.base], "built-in shape table"
    return None, "unknown (no config.json on disk)"


class TokenCounter:
    """Tokens of a rendered conversation: exact with the base's tokenizer files, else estimated."""

    def __init__(self, model: ModelConfig) -> None:
        self.exact = False
        tokenizer_file = base_file(model, "tokenizer.json")
        template = self._template(model)
        if tokenizer_file is not None and template is not None:
            from jinja2.sandbox import ImmutableSandboxedEnvironment
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.filters["tojson"] = lambda value, **_: json.dumps(value, ensure_ascii=False)
            self.template = env.from_string(template)
            self.exact = True

    @staticmethod
    def _template(model: ModelConfig) -> str | None:
        jinja = base_file(model, "chat_template.jinja")
        if jinja is not None:
            return jinja.read_text(encoding="utf-8")
        config = base_file(model, "tokenizer_config.json")
        if config is not None:
            template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
            return template if isinstance(template, str) else None
        return None

    def __call__(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> int:
        if self.exact:
            text = self.template.render(
                messages=messages, add_generation_prompt=add_generation_prompt, tools=None
            )
            return len(self.tokenizer.encode(text, add_special_tokens=False).ids)
        tokens = _TOKENS_PER_MESSAGE * (len(messages) + add_generation_prompt)
        if not messages or messages[0]["role"] != "system":
            tokens += _DEFAULT_SYSTEM_TOKENS
        for message in messages:
            cjk = sum("\u4e00" <= ch <= "\u9fff" for ch in message["content"])
            tokens += _TOKENS_PER_CJK * cjk + _TOKENS_PER_OTHER * (len(message["content"]) - cjk)
        return math.ceil(tokens)


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def sample_records(path: Path, n: int) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) >= n:
                break
    return rows


def padding_share(lengths: list[int], batch_size: int) -> float:
    """Share of padding tokens when batches are grouped by length as HF's sampler does: sorted
    longest first within mega-batches of 50 batches, each batch padded to its longest row."""
    real = padded = 0
    chunk = _MEGABATCH * batch_size
    for start in range(0, len(lengths), chunk):
        group = sorted(lengths[start : start + chunk], reverse=True)
        for b in range(0, len(group), batch_size):
            rows = group[b : b + batch_size]
            real += sum(rows)
            padded += max(rows) * len(rows)
    return 1 - real / padded if padded else 0.0


@dataclass(frozen=True)
class StepPlan:
    records: int
    rows: int  # packed rows, or records without packing
    world_size: int
    effective_batch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def step_plan(records: int, rows: int, train: TrainSettings) -> StepPlan:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    effective = train.per_device_batch_size * train.gradient_accumulation_steps * world
    micro_batches = math.ceil(rows / (train.per_device_batch_size * world)) if rows else 0
    per_epoch = math.ceil(micro_batches / train.gradient_accumulation_steps) if micro_batches else 0
    total = train.max_steps if train.max_steps > 0 else math.ceil(train.epochs * per_epoch)
    return StepPlan(records, rows, world, effective, per_epoch, total, math.ceil(train.warmup_ratio * total))


def schedule_line(plan: StepPlan, train: TrainSettings, unit: str = "") -> str:
    """Effective batch, optimizer steps and warm-up; `unit` names what a batch counts ("pairs")."""
    steps = f"{plan.total_steps:,} optimizer steps" + (
        " (max_steps)" if train.max_steps > 0 else f" ({train.epochs:g} epochs x {plan.steps_per_epoch:,})"
    )
    return (
        f"schedule: effective batch {plan.effective_batch}{unit} = "
        f"{train.per_device_batch_size} per device x {train.gradient_accumulation_steps} accumulation x "
        f"{plan.world_size} process(es); {steps}; "
        f"warm-up {plan.warmup_steps} steps, then {train.lr_scheduler} from lr {train.learning_rate:g}"
    )


def speed_line(model: ModelConfig, train: TrainSettings) -> str:
    checkpointing = "off"
    if train.gradient_checkpointing:
        checkpointing = "on, layer inputs offloaded to CPU" if train.activation_offload else "on"
    on_off = {True: "on", False: "off"}
    return (
        f"speed: attention {model.attn_implementation}, activation checkpointing {checkpointing}, "
        f"Liger kernels {on_off[train.liger_kernels]}, torch.compile {on_off[train.torch_compile]}, "
        "loss through TRL's fused LM head (no full logits)"
    )


def memory_lines(
    model: ModelConfig,
    lora: LoraSettings,
    train: TrainSettings,
    seq_len: int,
    budget_gib: float,
    *,
    sequences_per_item: int = 1,
    reference: int = 0,
) -> list[str]:
    """The estimate against the budget; when over, the largest fitting micro-batch (same
    effective batch through more accumulation), else a shorter length, else 4-bit. An item is
    a conversation (SFT) or a pair (`sequences_per_item` 2: chosen and rejected rows)."""
    shape, where = model_shape(model)
    if shape is None:
        return [f"peak GPU memory: no estimate, model shape {where}"]

    def estimate(batch: int, length: int, quantization: str) -> Any:
        return estimate_memory(
            shape,
            rank=lora.r,
            targets=lora.target_modules,
            quantization=quantization,
            seq_len=length,
            batch_size=batch * sequences_per_item,
            gradient_checkpointing=train.gradient_checkpointing,
            offload=train.activation_offload,
            attention=model.attn_implementation,
            fused_logits=True,  # every trainer here scores tokens through TRL's fused LM head
            reference=reference,
        )

    est = estimate(train.per_device_batch_size, seq_len, model.quantization)
    lines = [
        speed_line(model, train),
        f"peak GPU memory (estimate, model shape from {where}; LoRA {est.lora_params:,} params): "
        f"{est.describe()}",
    ]
    if est.total <= budget_gib * GIB:
        lines.append(f"  fits gpu_memory_gb {budget_gib:g}")
        return lines
    lines.append(f"  WARNING: over gpu_memory_gb {budget_gib:g}")
    total_batch = train.per_device_batch_size * train.gradient_accumulation_steps
    for batch in range(train.per_device_batch_size - 1, 0, -1):
        if (
            total_batch % batch == 0
            and estimate(batch, seq_len, model.quantization).total <= budget_gib * GIB
        ):
            accumulation = total_batch // batch
            lines.append(
                f"  proposal: train.per_device_batch_size={batch} "
                f"train.gradient_accumulation_steps={accumulation} (same effective batch)"
            )
            return lines
    length = seq_len // 2
    while length >= 256:
        if estimate(1, length, model.quantization).total <= budget_gib * GIB:
            lines.append(
                f"  proposal: train.per_device_batch_size=1 "
                f"train.gradient_accumulation_steps={total_batch} data.max_length={length}"
            )
            return lines
        length //= 2
    if model.quantization != "4bit" and estimate(1, seq_len, "4bit").total <= budget_gib * GIB:
        lines.append(
            f"  proposal: model.quantization=4bit train.per_device_batch_size=1 "
            f"train.gradient_accumulation_steps={total_batch}"
        )
        return lines
    lines.append("  no single-GPU setting fits: use several GPUs with ZeRO-3 (configs/accelerate/)")
    return lines
