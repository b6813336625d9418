"""`k12tune <stage>` and `python -m scripts.<stage>`: one parser for every stage.

Each stage is named here with the dotted paths of its config model, its run function and its
dry-run plan; they are imported only when that stage runs, so `--help` and dry runs stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k12tune.errors import K12TuneError

log = logging.getLogger("k12tune")


@dataclass(frozen=True)
class Stage:
    summary: str
    config: str
    run: str
    plan: str
    summarise: str
    default_config: str
    example: str  # a typical KEY=VALUE override, for --help


STAGES: dict[str, Stage] = {
    "prepare_data": Stage(
        summary="Clean, deduplicate, mix and split SFT and preference data into data_proc/.",
        config="k12tune.config.data:DataConfig",
        run="k12tune.data.pipeline:prepare_data",
        plan="k12tune.data.plan:data_plan",
        summarise="k12tune.data.summary:summarise",
        default_config="configs/data.yaml",
        example="sft_sources.0.weight=0",
    ),
    "train_sft": Stage(
        summary="LoRA/QLoRA fine-tuning of the base on data_proc/sft_train.jsonl into outputs/sft/.",
        config="k12tune.config.sft:SFTConfig",
        run="k12tune.train.sft:train_sft",
        plan="k12tune.train.sft_plan:sft_plan",
        summarise="k12tune.train.sft:summarise",
        default_config="configs/sft.yaml",
        example="model.quantization=4bit",
    ),
    "train_orpo": Stage(
        summary="ORPO alignment of the SFT policy on data_proc/pref_train.jsonl into outputs/align/.",
        config="k12tune.config.align:ORPOConfig",
        run="k12tune.train.align:train_orpo",
        plan="k12tune.train.align_plan:align_plan",
        summarise="k12tune.train.align:summarise",
        default_config="configs/orpo.yaml",
        example="orpo.length_penalty=0",
    ),
    "train_dpo": Stage(
        summary="DPO alignment of the SFT policy on data_proc/pref_train.jsonl into outputs/align/.",
        config="k12tune.config.align:DPOConfig",
        run="k12tune.train.align:train_dpo",
        plan="k12tune.train.align_plan:align_plan",
        summarise="k12tune.train.align:summarise",
        default_config="configs/dpo.yaml",
        example="dpo.reference_free=true",
    ),
    "eval_harness": Stage(
        summary="lm-evaluation-harness on the base and adapters (CMMLU, C-Eval, ...) with a K12 slice.",
        config="k12tune.config.eval:EvalConfig",
        run="k12tune.eval.harness:eval_harness",
        plan="k12tune.eval.plan:eval_plan",
        summarise="k12tune.eval.harness:summarise",
        default_config="configs/eval.yaml",
        example="compare=true",
    ),
    "export_lora": Stage(
        summary="Export an adapter (with a card) or the merged bf16 model, checked against base+adapter.",
        config="k12tune.config.export:ExportConfig",
        run="k12tune.export.export:export_lora",
        plan="k12tune.export.plan:export_plan",
        summarise="k12tune.export.export:summarise",
        default_config="configs/export.yaml",
        example="mode=merged",
    ),
    "report": Stage(
        summary="One report of the whole pipeline: outputs/report.html (self-contained) and report.md.",
        config="k12tune.config.report:ReportConfig",
        run="k12tune.report.build:write_report",
        plan="k12tune.report.plan:report_plan",
        summarise="k12tune.report.build:summarise",
        default_config="configs/report.yaml",
        example="out_dir=outputs",
    ),
}


CHAT_SUMMARY = "Talk to base + adapter (streamed, K12 teacher system prompt); --prompt for one answer."


def _load(dotted: str) -> Any:
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "1", "on"}:
        return True
    if lowered in {"false", "no", "0", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def resolved_config(cfg: Any) -> str:
    """The config after defaults and overrides, as YAML: what the run really uses."""
    import yaml

    body = yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False)
    return "resolved config:\n" + "\n".join(f"  {line}" for line in body.splitlines())


def build_parser(name: str, stage: Stage) -> argparse.ArgumentParser:
    from k12tune.config.loader import describe_fields

    parser = argparse.ArgumentParser(
        prog=f"k12tune {name}",
        description=stage.summary,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys (set them in the YAML file or as KEY=VALUE overrides such as "
        f"{stage.example}; list items by index):\n" + "\n".join(describe_fields(_load(stage.config))),
    )
    parser.add_argument(
        "--config", default=stage.default_config, help=f"YAML config file (default: {stage.default_config})."
    )
    parser.add_argument(
        "--dry-run",
        type=_bool,
        default=True,
        metavar="{true,false}",
        help="true (default): print the plan from a sample, write nothing; false: run the stage.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Logging verbosity.",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help=f"Override any config key, e.g. {stage.example}."
    )
    return parser


def run_stage(name: str, argv: list[str] | None = None) -> int:
    stage = STAGES[name]
    args = build_parser(name, stage).parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        from k12tune.config.loader import load_config

        cfg = load_config(_load(stage.config), Path(args.config), args.overrides)
        origin = args.config + (f" + {len(args.overrides)} override(s)" if args.overrides else "")
        if args.dry_run:
            print(f"{name}: config {origin}")
            print(_load(stage.plan)(cfg))
            print("dry run: nothing written; run again with --dry-run false to run the stage")
            return 0
        print(f"{name}: config {origin}; writing to {cfg.out_dir}")
        print(resolved_config(cfg))
        started = time.perf_counter()
        result = _load(stage.run)(cfg)
        print(_load(stage.summarise)(cfg, result, time.perf_counter() - started))
        return 0
    except K12TuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "chat":
        from k12tune.chat import main as chat

        return chat(argv[1:])
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in STAGES:
        lines = [
            "usage: k12tune <stage> [--config PATH] [--dry-run {true,false}] [KEY=VALUE ...]",
            "       k12tune chat [--adapter DIR] [--prompt TEXT] ...",
            "",
            "stages:",
        ]
        lines += [f"  {n:<14} {s.summary}" for n, s in STAGES.items()]
        lines.append(f"  {'chat':<14} {CHAT_SUMMARY}")
        lines.append("\n`k12tune <stage> --help` lists the stage's options and config keys.")
        known = not argv or argv[0] in {"-h", "--help"}
        print("\n".join(lines), file=sys.stdout if known else sys.stderr)
        if not known:
            print(f"error: unknown stage {argv[0]!r}", file=sys.stderr)
        return 0 if known else 2
    return run_stage(argv[0], argv[1:])
