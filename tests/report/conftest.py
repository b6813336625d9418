"""Inputs for the report tests, from the real stages where that is cheap: prepare_data on the
real sample data (plus one record whose rejection detail is hostile HTML and Markdown), and
the session's real train_sft and train_dpo outputs. The eval and export folders are written
here in the shapes eval_harness and export_lora write (their stages take minutes of lm-eval
and logit checks; the demo's end-to-end test reports on real ones), with real manifests."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from k12tune.config.data import DataConfig
from k12tune.config.eval import EvalConfig
from k12tune.config.export import ExportConfig
from k12tune.config.report import ReportConfig
from k12tune.data.pipeline import prepare_data
from k12tune.eval.report import plot_scores, summary_markdown
from k12tune.manifest import write_manifest

# A sharegpt record whose second speaker is unknown: rejected as unsupported_role, with the
# role (markup, a pipe, a backtick and a link) quoted in its detail.
HOSTILE_ROLE = "<img src=x onerror=alert(1)>|`[a](http://example.com)"
HOSTILE = {
    "conversations": [
        {"from": "human", "value": "什么是三角形的内角和？请说明。"},
        {"from": HOSTILE_ROLE, "value": "三角形的内角和是一百八十度。"},
    ]
}
EVAL_SCORES = {"base": 0.25, "sft": 0.375, "align": 0.5}
CHECK = {
    "passed": True,
    "tolerance": 0.001,
    "max_abs_diff": 9.5e-06,
    "reference_scale": 10.6,
    "adapter_effect": 9.5,
    "alternatives": {"the bare base": {"effect": 9.5, "distance": 9.5}},
    "unconfirmed": [],
    "prompts": 4,
    "positions": 403,
}


def run_data_stage(root: Path, shared: Path) -> Path:
    raw = root / "raw"
    layout = {
        "zh": ["sft/alpaca_zh_demo.json", "sft/prompt_response_zh.jsonl"],
        "tools": ["sft/glaive_toolcall_zh_demo.json"],
        "dpo": ["pref/dpo_zh_demo.json", "pref/dpo_en_demo.json"],
    }
    for name, files in layout.items():
        (raw / name).mkdir(parents=True)
        for rel in files:
            os.symlink(shared / rel, raw / name / Path(rel).name)
    (raw / "hostile").mkdir()
    (raw / "hostile" / "bad.jsonl").write_text(
        json.dumps(HOSTILE, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    cfg = DataConfig(
        raw_dir=str(raw),
        out_dir=str(root / "data_proc"),
        sft_sources=[{"name": "hostile"}, {"name": "zh"}, {"name": "tools"}],
        pref_sources=[{"name": "dpo", "lang_hint": "mixed"}],
        val_fraction=0.05,
    )
    prepare_data(cfg)
    return Path(cfg.out_dir)


def slice_row(value: float) -> dict:
    return {
        "metric": "acc",
        "value": value,
        "stderr": 0.05,
        "subjects": ["cmmlu_elementary_chinese"],
        "missing": ["cmmlu_elementary_mathematics"],
        "questions": 8,
        "correct": round(8 * value),
        "acc": value,
        "acc_stderr": 0.05,
        "per_subject": {"cmmlu_elementary_chinese": {"acc": value, "n": 8}},
    }


def write_eval(out: Path, base: Path, adapters: dict[str, Path]) -> Path:
    """An eval_harness output of compare mode: results.json's k12tune part, summary.md and
    scores.png from eval's own functions, and its manifest."""
    cfg = EvalConfig.model_validate(
        {
            "model": {"base": str(base)},
            "compare": True,
            "compare_adapters": {k: str(v) for k, v in adapters.items()},
            "tasks": [{"name": "cmmlu", "num_fewshot": 2}],
            "k12_subjects": ["cmmlu_elementary_chinese", "cmmlu_elementary_mathematics"],
            "limit": 8,
            "out_dir": str(out),
        }
    )
    table = {
        run: {"cmmlu": {"metric": "acc", "value": v, "stderr": 0.05}, "k12_slice": slice_row(v)}
        for run, v in EVAL_SCORES.items()
    }
    sources = ["cmmlu: local data_raw/eval/cmmlu (1 of 67 subtasks), 2-shot, metric acc"]
    runs = {"base": str(base), "sft": f"{base} + {adapters['sft']} (train_sft)"}
    runs["align"] = f"{runs['sft']} + {adapters['align']} (train_dpo)"
    out.mkdir(parents=True)
    report = {"runs": runs, "tasks": sources, "sources": {}, "scores": table}
    (out / "results.json").write_text(json.dumps({"k12tune": report, "lm_eval": {}}), encoding="utf-8")
    (out / "summary.md").write_text(summary_markdown(cfg, table, sources), encoding="utf-8")
    plot_scores(table, out / "scores.png")
    headline = {run: {row: cell["value"] for row, cell in rows.items()} for run, rows in table.items()}
    write_manifest(
        out,
        stage="eval_harness",
        config=cfg.model_dump(mode="json"),
        inputs={},
        outputs=["results.json", "summary.md", "scores.png"],
        counts={"scores": headline},
        libraries=(),
    )
    return out


def write_export(target: Path, base: Path, adapters: dict[str, Path]) -> Path:
    """An export_lora output in adapter mode: the DPO adapter's files, a card, the manifest."""
    target.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        shutil.copy(adapters["align"] / name, target / name)
    (target / "README.md").write_text("# k12-dpo\n", encoding="utf-8")
    cfg = ExportConfig.model_validate(
        {"model": {"base": str(base)}, "adapter": str(adapters["align"]), "out_root": str(target.parent)}
    )
    stack = f"{base} + {adapters['sft']} (train_sft) + {adapters['align']} (train_dpo)"
    counts = {
        "mode": "adapter",
        "stack": stack,
        "adapters": [str(adapters["sft"]), str(adapters["align"])],
        "trained_4bit": False,
        "rank": 32,
        "weights": ["adapter_config.json", "adapter_model.safetensors"],
        "how": "combined (PEFT add_weighted_adapter, cat)",
        "tokenizer": ["tokenizer.json"],
        "check": CHECK,
        "eval": "run 'align' of outputs/eval/results.json",
    }
    names = sorted(p.name for p in target.iterdir())
    write_manifest(
        target,
        stage="export_lora",
        config=cfg.model_dump(mode="json"),
        inputs={},
        outputs=names,
        counts=counts,
        libraries=(),
    )
    return target


@pytest.fixture(scope="session")
def stage_outputs(
    tmp_path_factory: pytest.TempPathFactory,
    shared_data: Path,
    tiny_base: Path,
    trained_adapters: dict[str, Path],
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    return {
        "data": run_data_stage(root, shared_data),
        "sft": trained_adapters["sft"],
        "align": trained_adapters["align"],
        "eval": write_eval(root / "eval", tiny_base, trained_adapters),
        "export_root": write_export(root / "adapters" / "k12-dpo", tiny_base, trained_adapters).parent,
    }


def report_config(outputs: dict[str, Path], out_dir: Path, **changes: object) -> ReportConfig:
    body = {
        "data_dir": str(outputs["data"]),
        "sft_dir": str(outputs["sft"]),
        "align_dirs": {"align": str(outputs["align"])},
        "eval_dir": str(outputs["eval"]),
        "export_root": str(outputs["export_root"]),
        "out_dir": str(out_dir),
    }
    return ReportConfig.model_validate({**body, **changes})
