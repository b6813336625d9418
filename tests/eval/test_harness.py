"""eval_harness on the tiny offline base and real trained adapters, with local task copies in
each task's published format: end to end with no network, the K12 slice, the task folder
lm-eval reads, the dry run's request counts, and the checks on adapters."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from k12tune.config.eval import K12_SUBJECTS, EvalConfig
from k12tune.errors import ConfigError, DataError
from k12tune.eval.harness import eval_harness
from k12tune.eval.plan import eval_plan
from k12tune.eval.report import k12_slice
from k12tune.eval.tasks import resolve_task, resolve_tasks, task_manager, write_task_folder
from k12tune.manifest import verify_manifest
from k12tune.stack import load_stack, load_stack_tokenizer, resolve_stack, weight_hashes

from .conftest import CEVAL_SUBJECTS

ROOT = Path(__file__).resolve().parents[2]
CMMLU_SUBJECTS = (
    "elementary_chinese",
    "elementary_commonsense",
    "elementary_mathematics",
    "high_school_biology",
    "high_school_mathematics",
    "high_school_physics",
)
FOUR_TASKS = [
    {"name": "cmmlu", "num_fewshot": 2},
    {"name": "ceval-valid", "num_fewshot": 1},
    {"name": "hellaswag", "num_fewshot": 1, "metric": "acc_norm"},
    {"name": "winogrande"},
]


def eval_config(base: Path, data_dir: Path, out: Path, **body) -> EvalConfig:
    return EvalConfig.model_validate(
        {
            "model": {"base": str(base)},
            "data_dir": str(data_dir),
            "out_dir": str(out),
            "device": "cpu",
            "batch_size": 16,
            **body,
        }
    )


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_compare_mode_end_to_end_offline(
    tiny_base: Path, trained_adapters: dict[str, Path], eval_copies: Path, tmp_path: Path, offline: None
) -> None:
    out = tmp_path / "eval"
    cfg = eval_config(
        tiny_base,
        eval_copies,
        out,
        compare=True,
        compare_adapters={k: str(v) for k, v in trained_adapters.items()},
        tasks=FOUR_TASKS,
        limit=3,
    )
    eval_harness(cfg)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert list(results["lm_eval"]) == ["base", "sft", "align"]
    cmmlu = [f"cmmlu_{s}" for s in CMMLU_SUBJECTS]
    ceval = [f"ceval-valid_{s}" for s in CEVAL_SUBJECTS]
    for run, raw in results["lm_eval"].items():
        assert set(raw["results"]) == {"cmmlu", "ceval-valid", "hellaswag", "winogrande", *cmmlu, *ceval}, run
        assert raw["group_subtasks"]["cmmlu"] == cmmlu
        shots = raw["n-shot"]
        assert [shots[cmmlu[0]], shots[ceval[0]], shots["hellaswag"], shots["winogrande"]] == [2, 1, 1, 0]
        assert all(raw["n-samples"][t]["effective"] == 3 for t in [*cmmlu, *ceval, "hellaswag", "winogrande"])
        assert raw["n-samples"]["cmmlu_elementary_chinese"]["original"] == 252  # the real file, read whole
        table = results["k12tune"]["scores"][run]
        assert list(table) == ["cmmlu", "ceval-valid", "hellaswag", "winogrande", "k12_slice"]
        assert table["hellaswag"]["value"] == raw["results"]["hellaswag"]["acc_norm,none"]
        assert table["cmmlu"]["value"] == raw["results"]["cmmlu"]["acc,none"]
    runs = results["k12tune"]["runs"]
    sft, align_folder = trained_adapters["sft"], trained_adapters["align"]
    assert runs["align"] == f"{tiny_base} + {sft} (train_sft) + {align_folder} (train_dpo)"
    summary = (out / "summary.md").read_text(encoding="utf-8")
    scores = results["k12tune"]["scores"]
    base, align = scores["base"]["winogrande"]["value"], scores["align"]["winogrande"]["value"]
    row = next(line for line in summary.splitlines() if line.startswith("| winogrande |"))
    assert row.startswith(f"| winogrande | acc | {100 * base:.2f} |")
    assert row.endswith(f" | {round(100 * align, 2) - round(100 * base, 2):+.2f} |")
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = verify_manifest(out, "eval_harness")
    assert manifest["counts"]["scores"]["base"]["cmmlu"] == scores["base"]["cmmlu"]["value"]
    # The evaluated adapters' weights, so an export's card shows only scores of these weights.
    assert manifest["inputs"] == weight_hashes(resolve_stack(align_folder))
    assert sorted(p.name for p in (out / "tasks").glob("*.yaml"))[:3] == [
        "_group_ceval-valid.yaml",
        "_group_cmmlu.yaml",
        "ceval-valid_high_school_chemistry.yaml",
    ]


def test_k12_slice_averages_exactly_the_listed_subjects(
    tiny_base: Path, eval_copies: Path, tmp_path: Path, offline: None
) -> None:
    listed = [
        "cmmlu_elementary_chinese",
        "cmmlu_high_school_physics",
        "ceval-valid_middle_school_physics",
        "ceval-valid_high_school_history",  # listed but not among the local copies
    ]
    cfg = eval_config(
        tiny_base,
        eval_copies,
        tmp_path / "eval",
        peft_adapter=None,
        tasks=["cmmlu", "ceval-valid"],
        k12_subjects=listed,
        limit=7,
    )
    summary = eval_harness(cfg)
    raw = json.loads((tmp_path / "eval" / "results.json").read_text(encoding="utf-8"))["lm_eval"]["base"]
    used = listed[:3]
    n = {s: raw["n-samples"][s]["effective"] for s in used}
    correct = {s: round(raw["results"][s]["acc,none"] * n[s]) for s in used}
    assert n == {used[0]: 7, used[1]: 7, used[2]: 4}  # ceval's val copy holds 4 questions
    row = summary["scores"]["base"]["k12_slice"]
    assert row["subjects"] == used
    assert row["missing"] == ["ceval-valid_high_school_history"]
    assert row["questions"] == 18
    assert row["value"] == sum(correct.values()) / 18


def test_k12_slice_definition() -> None:
    raw = {
        "results": {
            "a": {"acc,none": 0.5, "acc_stderr,none": 0.1},
            "b": {"acc,none": 0.25, "acc_stderr,none": 0.2},
            "c": {"acc,none": 1.0, "acc_stderr,none": 0.0},  # evaluated, not listed
        },
        "n-samples": {"a": {"effective": 10}, "b": {"effective": 4}, "c": {"effective": 100}},
    }
    piece = k12_slice(raw, ["a", "b", "d"])
    assert (piece["correct"], piece["questions"], piece["acc"]) == (6, 14, 6 / 14)
    assert piece["subjects"] == ["a", "b"] and piece["missing"] == ["d"]


def test_adapter_runs_keep_the_padded_vocabulary(
    tiny_base: Path, trained_adapters: dict[str, Path], eval_copies: Path, tmp_path: Path
) -> None:
    """lm-eval's own `peft=` path would shrink the embedding to the tokenizer's size; ours keeps
    every row, so a log-likelihood is normalised over the same vocabulary as the base's."""
    cfg = eval_config(
        tiny_base,
        eval_copies,
        tmp_path / "eval",
        peft_adapter=str(trained_adapters["align"]),
        tasks=["winogrande"],
        limit=1,
        log_samples=True,
    )
    eval_harness(cfg)
    raw = json.loads((tmp_path / "eval" / "results.json").read_text(encoding="utf-8"))["lm_eval"]["align"]
    sample = raw["samples"]["winogrande"][0]
    (context, continuation), reported = sample["arguments"][0], sample["resps"][0][0][0]
    stack = resolve_stack(trained_adapters["align"])
    tokenizer = load_stack_tokenizer(stack)
    model = load_stack(stack, torch.float32, "cpu", merge=True)
    assert model.config.vocab_size > len(tokenizer)  # padded, as in Qwen2.5
    whole = tokenizer(context + continuation)["input_ids"]
    prefix = len(tokenizer(context)["input_ids"])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([whole])).logits[0, prefix - 1 : -1]
    targets = torch.tensor(whole[prefix:])

    def loglikelihood(rows: torch.Tensor) -> float:
        return torch.log_softmax(rows, -1).gather(-1, targets[:, None]).sum().item()

    assert reported == pytest.approx(loglikelihood(logits), abs=1e-4)
    assert reported != pytest.approx(loglikelihood(logits[:, : len(tokenizer)]), abs=1e-4)


def test_task_folder_points_every_subtask_at_its_local_files(eval_copies: Path, tmp_path: Path) -> None:
    cfg = eval_config(
        Path("unused"), eval_copies, tmp_path / "eval", tasks=["cmmlu", "hellaswag", "arc_easy"]
    )
    cmmlu, hellaswag, hub = resolve_tasks(cfg)
    assert [s.name for s in cmmlu.subtasks] == [f"cmmlu_{s}" for s in CMMLU_SUBJECTS]
    assert len(cmmlu.left_out) == 61 and "cmmlu_anatomy" in cmmlu.left_out
    assert hub.local is None and hub.subtasks[0].files == {}
    folder = tmp_path / "tasks"
    assert write_task_folder([cmmlu, hellaswag, hub], folder) == ["cmmlu", "hellaswag", "arc_easy"]
    chinese = yaml.safe_load((folder / "cmmlu_elementary_chinese.yaml").read_text(encoding="utf-8"))
    assert chinese["dataset_path"] == "csv" and chinese["dataset_name"] is None
    assert chinese["dataset_kwargs"]["data_files"] == {
        "dev": str((eval_copies / "cmmlu" / "dev" / "elementary_chinese.csv").resolve()),
        "test": str((eval_copies / "cmmlu" / "test" / "elementary_chinese.csv").resolve()),
    }
    assert chinese["include"].endswith("lm_eval/tasks/cmmlu/cmmlu_elementary_chinese.yaml")
    assert "dataset_path" not in yaml.safe_load((folder / "arc_easy.yaml").read_text(encoding="utf-8"))
    group = yaml.safe_load((folder / "_group_cmmlu.yaml").read_text(encoding="utf-8"))
    assert group["task"] == [s.name for s in cmmlu.subtasks]
    # lm-eval builds the tasks from these files: real documents, the stock prompt.
    loaded = task_manager(folder).load(["hellaswag"])["tasks"]["hellaswag"]
    docs = list(loaded.eval_docs)
    assert len(docs) == 3 and docs[0]["choices"][3] == " sing loudly."  # stock process_docs dropped "[title]"


def test_missing_fewshot_split_and_bad_names_are_clear_errors(eval_copies: Path, tmp_path: Path) -> None:
    for dev in (eval_copies / "ceval-valid" / "dev").iterdir():
        dev.unlink()
    cfg = eval_config(
        Path("unused"), eval_copies, tmp_path, tasks=[{"name": "ceval-valid", "num_fewshot": 5}]
    )
    with pytest.raises(ConfigError, match=r"not the 'dev' split it needs for its few-shot examples"):
        resolve_tasks(cfg)
    # 0-shot needs no dev split: the stock few-shot split is switched off, and lm-eval builds it.
    source = resolve_task(cfg.tasks[0].model_copy(update={"num_fewshot": 0}), eval_copies)
    write_task_folder([source], tmp_path / "tasks")
    tasks = task_manager(tmp_path / "tasks").load(["ceval-valid"])["tasks"]
    assert sorted(len(list(t.eval_docs)) for t in tasks.values()) == [4, 4]
    with pytest.raises(ConfigError, match="'cmmlu_k12' is not an lm-eval task or group"):
        resolve_tasks(eval_config(Path("unused"), eval_copies, tmp_path, tasks=["cmmlu_k12"]))


def test_a_task_file_lm_eval_cannot_load_is_reported(
    eval_copies: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = resolve_task(EvalConfig(tasks=["winogrande"]).tasks[0], eval_copies)
    monkeypatch.setattr("k12tune.eval.tasks._dump", lambda cfg: "task: [unclosed\n")
    with pytest.raises(ConfigError, match=r"winogrande\.yaml: lm-eval could not load this task file"):
        write_task_folder([source], tmp_path / "tasks")


def test_dry_run_counts_requests_without_a_model(
    trained_adapters: dict[str, Path],
    tiny_base: Path,
    eval_copies: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    offline: None,
) -> None:
    def no_model(*args, **kwargs):
        raise AssertionError("the dry run loaded a model")

    monkeypatch.setattr("k12tune.stack.load_base_model", no_model)
    cfg = eval_config(
        tiny_base,
        eval_copies,
        tmp_path / "eval",
        compare=True,
        compare_adapters={k: str(v) for k, v in trained_adapters.items()},
        tasks=[*FOUR_TASKS, "arc_easy"],
        limit=3,
    )
    plan = eval_plan(cfg)
    # 4 choices per CMMLU, C-Eval and HellaSwag question, 2 per WinoGrande sentence.
    assert "6 subtask(s), 18 questions, 72 requests per run" in plan
    assert "2 subtask(s), 6 questions, 24 requests per run" in plan
    assert "1 subtask(s), 3 questions, 12 requests per run" in plan
    assert "1 subtask(s), 3 questions, 6 requests per run" in plan
    assert "arc_easy: hub (allenai/ai2_arc)" in plan
    assert "requests: 114 per run x 3 run(s) = 342 (local tasks only)" in plan
    assert f"K12 slice: 8 of {len(K12_SUBJECTS)} listed subjects are among the tasks" in plan
    assert f"cmmlu: local {eval_copies / 'cmmlu'} (6 of 67 subtasks; left out: cmmlu_agronomy" in plan
    assert not (tmp_path / "eval").exists()


def test_adapters_are_checked_before_any_model_loads(
    tiny_base: Path, trained_adapters: dict[str, Path], eval_copies: Path, tmp_path: Path, monkeypatch
) -> None:
    other = eval_config(Path("other/base"), eval_copies, tmp_path, peft_adapter=str(trained_adapters["sft"]))
    with pytest.raises(ConfigError, match=r"was trained on .*tiny_base.*but model.base is 'other/base'"):
        eval_harness(other)
    monkeypatch.setattr("k12tune.stack.file_digest", lambda path, algorithm: "0" * 64)
    cfg = eval_config(tiny_base, eval_copies, tmp_path, peft_adapter=str(trained_adapters["align"]))
    with pytest.raises(DataError, match="changed after train_dpo started from it"):
        eval_harness(cfg)
    assert not (tmp_path / "results.json").exists()


def test_cli_dry_run_of_the_shipped_config(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.eval_harness",
            "--config",
            "configs/eval.yaml",
            f"data_dir={tmp_path}",
            f"peft_adapter={tmp_path / 'none'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "holds no adapter" in done.stdout
    for line in ("cmmlu: hub (haonan-li/cmmlu), 5-shot", "ceval-valid: hub (ceval/ceval-exam), 5-shot"):
        assert line in done.stdout
    assert "hellaswag: hub (Rowan/hellaswag), 0-shot (the task's default), metric acc_norm" in done.stdout


def test_the_demo_ships_a_valid_cmmlu_copy(tmp_path: Path) -> None:
    from k12tune.demo.data import write_demo_eval

    write_demo_eval(tmp_path)
    source = resolve_task(EvalConfig(tasks=[{"name": "cmmlu", "num_fewshot": 2}]).tasks[0], tmp_path)
    assert [s.name for s in source.subtasks] == ["cmmlu_elementary_chinese", "cmmlu_elementary_mathematics"]
    write_task_folder([source], tmp_path / "tasks")
    maths = task_manager(tmp_path / "tasks").load(["cmmlu"])["tasks"]["cmmlu_elementary_mathematics"]
    docs = list(maths.eval_docs)
    assert len(docs) == 25 and len(list(maths.fewshot_docs())) == 5
    for doc in docs:  # the marked option is the worked answer to the word problem
        numbers = [int(n) for n in re.findall(r"\d+", doc["Question"])]
        right = int(doc["ABCD"[maths.doc_to_target(doc)]])
        assert right in {numbers[0] + numbers[1], numbers[0] - numbers[1], numbers[0] * numbers[1]}


def test_chat_template_switch_wraps_every_request(tiny_base: Path, eval_copies: Path, tmp_path: Path) -> None:
    contexts = {}
    for chat in (False, True):
        cfg = eval_config(
            tiny_base,
            eval_copies,
            tmp_path / str(chat),
            peft_adapter=None,
            tasks=[{"name": "winogrande", "num_fewshot": 1}],
            limit=1,
            log_samples=True,
            apply_chat_template=chat,
            system_instruction="你是一位中小学老师。" if chat else None,
        )
        eval_harness(cfg)
        results = json.loads((tmp_path / str(chat) / "results.json").read_text(encoding="utf-8"))
        contexts[chat] = results["lm_eval"]["base"]["samples"]["winogrande"][0]["arguments"][0][0]
    assert "<|im_start|>" not in contexts[False]
    assert contexts[True].startswith("<|im_start|>system\n你是一位中小学老师。<|im_end|>\n<|im_start|>user\n")
    assert contexts[True].count("<|im_start|>assistant\n") == 2  # the few-shot example is an earlier turn
