"""`export_lora`'s dry run: the stack, the target, what will be copied, combined or merged, the
size of the result, and the check; read from manifests and configs (the base's size as the
training dry runs read it), with no model loaded and neither torch nor transformers imported."""

from __future__ import annotations

import math

from k12tune.config.export import SHARD_SIZE, ExportConfig
from k12tune.config.train import ModelConfig
from k12tune.errors import K12TuneError
from k12tune.export.adapter import adapter_config, check_combinable, export_rank, rank
from k12tune.export.card import find_scores
from k12tune.export.check import describe_tolerance
from k12tune.export.files import ADAPTER_CONFIG, TOKENIZER_FILES
from k12tune.export.merged import QLORA_NOTE
from k12tune.export.source import export_stack, target_folder
from k12tune.stack import ADAPTER_WEIGHTS, Stack
from k12tune.train.plan import model_shape

BYTES_PER_PARAMETER = {"float32": 4, "bfloat16": 2, "float16": 2}
UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def shard_bytes(size: str) -> int:
    unit = SHARD_SIZE.match(size).group(1)  # type: ignore[union-attr]  # validated by the config
    return int(size.removesuffix(unit)) * UNITS[unit]


def human(n_bytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes:.0f} B"


def base_parameters(model: ModelConfig) -> int | None:
    """The base's parameter count from its config.json (or the documented shapes), as the
    training dry runs size it; None when neither is on this machine."""
    shape, _ = model_shape(model)
    return shape.params() if shape is not None else None


def adapter_lines(stack: Stack) -> list[str]:
    weights = sum((a.folder / ADAPTER_WEIGHTS).stat().st_size for a in stack.adapters)
    if len(stack.adapters) == 1:
        return [f"  copy {ADAPTER_CONFIG}, {ADAPTER_WEIGHTS} ({human(weights)}) and the tokenizer"]
    ranks = " + ".join(str(rank(adapter_config(a))) for a in stack.adapters)
    return [
        f"  combine the {len(stack.adapters)} adapters into one on the bare base (PEFT "
        f"add_weighted_adapter, cat: exact): rank {ranks} = {export_rank(stack)}, about {human(weights)}",
        "  (vLLM then needs --max-lora-rank of at least that rank)",
    ]


def merged_lines(cfg: ExportConfig, stack: Stack, parameters: int | None) -> list[str]:
    merge = f"  merge the {len(stack.adapters)} adapter(s) into the base in float32, save {cfg.dtype}"
    if parameters is None:
        return [merge, "  size: unknown until the base is on this machine (not downloaded by a dry run)"]
    size = parameters * BYTES_PER_PARAMETER[cfg.dtype]
    shards = max(1, math.ceil(size / shard_bytes(cfg.max_shard_size)))
    return [
        merge,
        f"  {parameters:,} parameters: about {human(size)} in ~{shards} shard(s) of at most "
        f"{cfg.max_shard_size}",
    ]


def memory_line(cfg: ExportConfig, parameters: int | None) -> str:
    need = f"~{human(parameters * 4)}" if parameters else "4 bytes per parameter"
    return (
        f"device: {cfg.device}; the base is loaded there in float32 ({need}), once for the "
        "reference and once to check the export"
    )


def export_plan(cfg: ExportConfig) -> str:
    lines = ["export_lora plan (dry run: no model is loaded, nothing is written)"]
    try:
        stack = export_stack(cfg)
        if cfg.mode == "adapter":
            check_combinable(stack)
    except K12TuneError as exc:
        return "\n".join([*lines, f"not ready: {exc}"])
    target = target_folder(cfg, stack)
    replaces = " (replaces the export there)" if target.exists() else ""
    lines += [f"stack: {stack.describe()}", f"mode: {cfg.mode} -> {target}/{replaces}"]
    parameters = base_parameters(cfg.model)
    lines += adapter_lines(stack) if cfg.mode == "adapter" else merged_lines(cfg, stack, parameters)
    tokenizer = [name for name in TOKENIZER_FILES if (stack.adapters[-1].folder / name).is_file()]
    lines.append(f"  tokenizer from {stack.adapters[-1].folder}: {', '.join(tokenizer) or 'none found'}")
    if stack.trained_4bit:
        lines.append(f"  note: {QLORA_NOTE}")
    lines.append(memory_line(cfg, parameters))
    lines.append(f"check: {len(cfg.check.prompts)} prompt(s), tolerance {describe_tolerance(cfg)}")
    lines += [f"  {prompt}" for prompt in cfg.check.prompts]
    lines.append(f"card: README.md; eval scores: {find_scores(cfg.eval_dir, stack)[1]}")
    return "\n".join(lines)
