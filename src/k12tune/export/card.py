"""The export's README.md: what it is, how it was trained, checked and scored, how to load it.

Everything comes from the stage outputs (each adapter's resolved config.yaml and manifest), the
export's own numbers and, when they belong to this exact stack, eval_harness scores; no
timestamps, so the same export gives the same card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from k12tune.config.export import ExportConfig
from k12tune.digest import LABELS
from k12tune.errors import DataError
from k12tune.eval.report import delta_points, percent
from k12tune.export.adapter import adapter_config, rank
from k12tune.export.merged import QLORA_NOTE
from k12tune.manifest import MANIFEST, digest_algorithm, verify_manifest
from k12tune.stack import Adapter, Stack, weight_hashes

# The ranks vLLM accepts for --max-lora-rank (`MaxLoRARanks` in vllm/config/lora.py).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def find_scores(eval_dir: str | None, stack: Stack) -> tuple[dict[str, Any] | None, str]:
    """(scores, where they come from) when a finished eval_harness run evaluated exactly this
    stack (same `describe()`, and the same adapter weights by digest, so scores of an older
    adapter at the same path are not shown), else (None, why not). The bare base's run is
    included if any."""
    if eval_dir is None:
        return None, "eval_dir is null"
    folder = Path(eval_dir)
    try:
        manifest = verify_manifest(folder, "eval_harness")
    except DataError:
        return None, f"no finished eval_harness output in {folder}"
    report = orjson.loads((folder / "results.json").read_bytes())["k12tune"]
    runs = report["runs"]
    wanted = stack.describe()
    matching = [name for name, described in runs.items() if described == wanted]
    if not matching:
        return None, f"no run in {folder / 'results.json'} evaluated {wanted}"
    evaluated = manifest.get("inputs", {})
    algorithm = digest_algorithm(manifest, folder / MANIFEST)
    now = weight_hashes(stack, algorithm)
    changed = [path for path, digest in now.items() if evaluated.get(path) != digest]
    if changed:
        return None, f"{folder} evaluated other weights than {', '.join(changed)} hold now"
    run = matching[0]
    base_run = next((name for name, described in runs.items() if described == stack.model.base), None)
    found = {
        "source": str(folder / "results.json"),
        "run": run,
        "scores": report["scores"][run],
        "base_run": base_run,
        "base": report["scores"][base_run] if base_run else None,
    }
    return found, f"run {run!r} of {folder / 'results.json'}"


def vllm_rank(needed: int) -> int | None:
    return next((r for r in VLLM_LORA_RANKS if r >= needed), None)


def _value(cell: dict[str, Any] | None) -> float | None:
    return None if cell is None else cell.get("value")


def scores_section(found: dict[str, Any] | None, why: str) -> list[str]:
    lines = ["## Evaluation", ""]
    if found is None:
        return [*lines, f"No eval_harness scores for this exact stack ({why}).", ""]
    base = found["base"]
    columns = [
        "task",
        "metric",
        *([found["base_run"], "this model", "delta (pp)"] if base else ["this model"]),
    ]
    lines += [
        f"Scores (%) from {found['source']}, run `{found['run']}`"
        + (f", beside the bare base's run `{found['base_run']}`:" if base else ":"),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row, cell in found["scores"].items():
        value = _value(cell)
        if base:
            before = _value(base.get(row))
            values = [percent(before), percent(value), delta_points(value, before)]
        else:
            values = [percent(value)]
        lines.append("| " + " | ".join([row, str(cell.get("metric")), *values]) + " |")
    lines += [
        "",
        "C-Eval and CMMLU are CC BY-NC-SA: the scores measured on them are for non-commercial comparison.",
        "",
    ]
    return lines


def _start(adapter: Adapter, below: Adapter | None) -> str:
    """Where training started, as the stack shows it: an alignment adapter with an adapter below
    it in the stack was trained on that one merged in (start.mode merge)."""
    sft = adapter.config.get("start", {}).get("sft_adapter")
    if below is not None:
        return f"a fresh LoRA on the base with {below.folder} merged in (start.mode merge)"
    if adapter.stage == "train_sft" or sft is None:
        return "a fresh LoRA on the bare base"
    return f"the SFT adapter {sft} trained further (start.mode continue)"


def _loss(adapter: Adapter) -> str:
    cfg = adapter.config
    if adapter.stage == "train_dpo":
        dpo = cfg["dpo"]
        return f"DPO, beta {dpo['beta']}, reference-free {str(dpo['reference_free']).lower()}"
    if adapter.stage == "train_orpo":
        orpo = cfg["orpo"]
        return f"ORPO, beta {orpo['beta']}, length penalty {orpo['length_penalty']}"
    return "cross-entropy on the assistant tokens"


def _data(adapter: Adapter) -> list[str]:
    hashes = adapter.manifest.get("inputs", {})
    label = LABELS[adapter.digest]
    lines = []
    for key in ("train_file", "val_file"):
        path = adapter.config["data"].get(key)
        if path:
            digest = hashes.get(path)
            lines.append(f"  - {key}: `{path}`" + (f" ({label} {digest[:16]}…)" if digest else ""))
    return lines


def adapter_section(number: int, adapter: Adapter, below: Adapter | None) -> list[str]:
    peft = adapter_config(adapter)
    train = adapter.config["train"]
    counts = adapter.manifest.get("counts", {})
    length = f"max_steps {train['max_steps']}" if train["max_steps"] > 0 else f"{train['epochs']} epoch(s)"
    quantized = adapter.config["model"]["quantization"] == "4bit"
    modules = peft["target_modules"]
    modules = modules if isinstance(modules, str) else ", ".join(sorted(modules))
    return [
        f"### {number}. `{adapter.folder}` ({adapter.stage})",
        "",
        f"- start: {_start(adapter, below)}",
        "- data:",
        *_data(adapter),
        f"- LoRA: r {rank(peft)}, alpha {peft['lora_alpha']}, dropout {peft['lora_dropout']}, "
        f"modules {modules}",
        f"- base weights in training: {'4-bit NF4 (QLoRA)' if quantized else 'unquantised'}, bf16 "
        f"mixed precision {str(counts.get('bf16', '?')).lower()}",
        f"- optimisation: learning rate {train['learning_rate']} ({train['lr_scheduler']}, warm-up "
        f"{train['warmup_ratio']}), {length}, batch {train['per_device_batch_size']} x "
        f"{train['gradient_accumulation_steps']} accumulation per device, seed {train['seed']}; "
        f"{counts.get('global_step', '?')} optimizer steps done",
        f"- loss: {_loss(adapter)}",
        "",
    ]


def contents_section(cfg: ExportConfig, stack: Stack, counts: dict[str, Any]) -> list[str]:
    lines = ["## Contents", ""]
    if cfg.mode == "adapter":
        total = counts["rank"]
        ranks = " + ".join(str(rank(adapter_config(a))) for a in stack.adapters)
        if len(stack.adapters) > 1:
            lines.append(
                f"One LoRA adapter for the bare base that combines the {len(stack.adapters)} adapters "
                'below exactly (PEFT `add_weighted_adapter`, `combination_type="cat"`, weights 1): '
                f"its rank is the sum of theirs, {ranks} = {total}, and each adapter's scaling is "
                f"folded into its rows of `lora_A` (alpha = r = {total}, scaling 1)."
            )
        else:
            lines.append(f"The trained LoRA adapter (rank {total}), copied byte for byte.")
        allowed = vllm_rank(total)
        lines.append(
            f"A server must allow rank {total}: vLLM's `--max-lora-rank` at least {total}"
            + (f" (the smallest value it accepts is {allowed})." if allowed else ", beyond vLLM's 512.")
        )
    else:
        shards = counts["shards"]
        lines.append(
            f"`{stack.model.base}` with the adapters below merged into its weights in float32 and "
            f"rounded once to {counts['dtype']}: {counts['parameters']:,} parameters in "
            f"{len(shards)} safetensors shard(s), with config.json and generation_config.json; "
            "loads with plain transformers or vLLM, no peft needed."
        )
    lines.append(
        f"Tokenizer files (the ones the adapter was trained with): {', '.join(counts['tokenizer'])}."
    )
    if stack.trained_4bit:
        lines.append(f"Note: {QLORA_NOTE}.")
    return [*lines, ""]


def check_section(check: dict[str, Any]) -> list[str]:
    lines = [
        "## Export check",
        "",
        "Before publishing, this folder was reloaded and its logits compared with those of the "
        "trained model (the base in float32 with the adapters applied unmerged) on "
        f"{check['prompts']} chat-formatted prompts, {check['positions']} positions. Each number "
        "is a maximum absolute logit difference over prompts, positions and vocabulary.",
        "",
        f"- this export vs the trained model: {check['max_abs_diff']:.4g} (tolerance "
        f"{check['tolerance']:.4g}; the trained model's largest absolute logit is "
        f"{check['reference_scale']:.4g})",
        "",
        "| model lacking part of the stack | vs the trained model | vs this export |",
        "|---|---|---|",
        *(
            f"| {label} | {numbers['effect']:.4g} | {numbers['distance']:.4g} |"
            for label, numbers in check["alternatives"].items()
        ),
    ]
    if check["unconfirmed"]:
        lines += [
            "",
            "Within the tolerance of the trained model, so this check cannot tell them apart from "
            "it: " + ", ".join(check["unconfirmed"]) + ".",
        ]
    return [*lines, ""]


def usage_section(cfg: ExportConfig, target: Path, counts: dict[str, Any]) -> list[str]:
    base = cfg.model.base
    if cfg.mode == "adapter":
        code = [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base}", dtype="bfloat16", device_map="auto")',
            f'model = PeftModel.from_pretrained(base, "{target}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{target}")',
        ]
        allowed = vllm_rank(counts["rank"]) or counts["rank"]
        serve = (
            f"vllm serve {base} --enable-lora --lora-modules {target.name}={target} --max-lora-rank {allowed}"
        )
    else:
        code = [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'model = AutoModelForCausalLM.from_pretrained("{target}", dtype="{counts["dtype"]}", '
            'device_map="auto")',
            f'tokenizer = AutoTokenizer.from_pretrained("{target}")',
        ]
        serve = f"vllm serve {target} --dtype {counts['dtype']}"
    return ["## Usage", "", "```python", *code, "```", "", "```bash", serve, "```", ""]


def model_card(
    cfg: ExportConfig, stack: Stack, target: Path, counts: dict[str, Any], scores: tuple[dict | None, str]
) -> str:
    kind = "LoRA adapter" if cfg.mode == "adapter" else f"merged {counts['dtype']} model"
    revision = f" (revision {cfg.model.revision})" if cfg.model.revision else ""
    lines = [
        f"# {target.name}",
        "",
        f"A {kind} fine-tuned from `{cfg.model.base}`{revision} with k12tune as a Chinese K12 "
        "teaching assistant; exported by `k12tune export_lora`.",
        "",
        *contents_section(cfg, stack, counts),
        "## Training",
        "",
        f"Stack: {stack.describe()}",
        "",
    ]
    below: Adapter | None = None
    for number, adapter in enumerate(stack.adapters, start=1):
        lines += adapter_section(number, adapter, below)
        below = adapter
    lines += check_section(counts["check"])
    lines += scores_section(*scores)
    lines += usage_section(cfg, target, counts)
    lines += [
        "## Licence",
        "",
        f"The base model's licence applies to these weights (`{cfg.model.base}`; Qwen2.5-7B-Instruct "
        "is Apache-2.0). The evaluation data sets C-Eval and CMMLU are CC BY-NC-SA. The training "
        "data's own licences are those of the files listed above.",
        "",
    ]
    return "\n".join(lines)
