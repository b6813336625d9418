"""eval_harness: lm-evaluation-harness on the base and the trained adapters, with a K12 view.

Each run (the bare base, or a base + adapter stack from `k12tune.stack`) is loaded once, merged
into the weights when the base is 16-bit (faster, and what gets deployed), wrapped in lm-eval's
`hf` model class (`HFLM`) and evaluated with `lm_eval.simple_evaluate` on the task folder that
`eval.tasks` writes, so local copies replace the hub. Outputs in `out_dir`:
- `results.json`: `lm_eval` holds lm-eval's own output per run, unchanged; `k12tune` the
  headline scores, the K12 slice, deltas and where each task's data came from;
- `summary.md` (the table) and `scores.png` (the chart), then `manifest.json` last;
- `tasks/`: the task YAMLs lm-eval ran, for reproducing a number with `lm-eval --include_path`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from k12tune.atomic import publish, staging_dir
from k12tune.config.eval import EvalConfig
from k12tune.eval.report import first_names, plot_scores, scores, summary_markdown
from k12tune.eval.tasks import TaskSource, resolve_tasks, task_manager, write_task_folder
from k12tune.manifest import remove_manifest, write_manifest
from k12tune.stack import (
    Stack,
    default_device,
    load_stack,
    load_stack_tokenizer,
    release_memory,
    resolve_stack_on,
    torch_dtype,
    weight_hashes,
)

log = logging.getLogger(__name__)

STAGE = "eval_harness"
OUTPUTS = ("results.json", "summary.md", "scores.png")
LIBRARIES = ("torch", "transformers", "peft", "lm_eval", "datasets")


def run_stacks(cfg: EvalConfig) -> dict[str, Stack]:
    """Run name -> stack, every adapter checked before any model is loaded."""
    return {
        name: Stack(cfg.model) if folder is None else resolve_stack_on(folder, cfg.model)
        for name, folder in cfg.runs().items()
    }


def describe_source(source: TaskSource) -> str:
    n = source.task.num_fewshot
    shots = f"{n}-shot" if n is not None else "0-shot (the task's default)"
    if source.local is None:
        where = f"hub ({source.subtasks[0].config.get('dataset_path')})"
    else:
        where = f"local {source.local}"
        if source.is_group:
            total = len(source.subtasks) + len(source.left_out)
            where += f" ({len(source.subtasks)} of {total} subtasks"
            if source.left_out:
                where += f"; left out: {first_names(source.left_out, 5)}"
            where += ")"
    return f"{source.task.name}: {where}, {shots}, metric {source.task.metric}"


def evaluate_stack(cfg: EvalConfig, stack: Stack, names: list[str], manager: Any) -> dict[str, Any]:
    """lm-eval's output for one stack."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    device = default_device(cfg.device)
    quantized = cfg.model.quantization == "4bit"
    if stack.trained_4bit and not quantized:
        log.info(
            "%s: QLoRA adapter evaluated on the 16-bit base (as it is merged on export)", stack.describe()
        )
    model = load_stack(stack, torch_dtype(cfg.dtype, device), device, merge=not quantized)
    lm = HFLM(
        pretrained=model,
        tokenizer=load_stack_tokenizer(stack),
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
    )
    try:
        return lm_eval.simple_evaluate(
            model=lm,
            tasks=names,
            task_manager=manager,
            limit=cfg.lm_eval_limit(),
            apply_chat_template=cfg.apply_chat_template,
            fewshot_as_multiturn=cfg.apply_chat_template,
            system_instruction=cfg.system_instruction,
            log_samples=cfg.log_samples,
            random_seed=cfg.seed,
            numpy_random_seed=cfg.seed,
            torch_random_seed=cfg.seed,
            fewshot_random_seed=cfg.seed,
        )
    finally:
        del lm, model
        release_memory()


def eval_harness(cfg: EvalConfig) -> dict[str, Any]:
    from lm_eval.utils import handle_non_serializable

    sources = resolve_tasks(cfg)
    stacks = run_stacks(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_manifest(out)
    names = write_task_folder(sources, out / "tasks")
    manager = task_manager(out / "tasks")
    raw = {}
    for name, stack in stacks.items():
        log.info("evaluating %s: %s", name, stack.describe())
        raw[name] = evaluate_stack(cfg, stack, names, manager)
    table = scores(cfg, raw)
    described = [describe_source(s) for s in sources]
    report = {
        "runs": {name: stack.describe() for name, stack in stacks.items()},
        "tasks": described,
        "sources": {
            s.task.name: {
                "local": str(s.local) if s.local else None,
                "subtasks": [sub.name for sub in s.subtasks],
                "left_out": s.left_out,
            }
            for s in sources
        },
        "scores": table,
    }
    markdown = summary_markdown(cfg, table, described)
    with staging_dir(out) as staging:
        document = {"k12tune": report, "lm_eval": raw}
        text = json.dumps(document, indent=2, ensure_ascii=False, default=handle_non_serializable)
        (staging / "results.json").write_text(text, encoding="utf-8")
        (staging / "summary.md").write_text(markdown, encoding="utf-8")
        plot_scores(table, staging / "scores.png")
        publish(staging, out, list(OUTPUTS))
    headline = {run: {row: cell["value"] for row, cell in rows.items()} for run, rows in table.items()}
    write_manifest(
        out,
        stage=STAGE,
        config=cfg.model_dump(mode="json"),
        inputs={path: digest for stack in stacks.values() for path, digest in weight_hashes(stack).items()},
        outputs=list(OUTPUTS),
        counts={"scores": headline},
        libraries=LIBRARIES,
    )
    return {"scores": table, "runs": report["runs"], "markdown": markdown}


def summarise(cfg: EvalConfig, summary: dict[str, Any], seconds: float) -> str:
    out = Path(cfg.out_dir)
    lines = [f"eval_harness finished in {seconds:.0f} s: {len(summary['runs'])} run(s)"]
    lines += [f"  {name}: {stack}" for name, stack in summary["runs"].items()]
    lines += ["", summary["markdown"].rstrip()]
    lines.append(f"\nwritten: {out / 'results.json'}, {out / 'summary.md'}, {out / 'scores.png'}")
    return "\n".join(lines)
