"""The demo itself, as `make demo` runs it, in a temporary folder: every stage finishes, the
deliberately bad records are all caught and accounted for, training moves the losses, the
evaluation compares the four models, the export passes its check, and the report shows it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from k12tune.demo.run import DEMO_ROOT, MARKER, STEPS, main
from k12tune.manifest import verify_manifest
from k12tune.train.runlog import read_log

ROOT = Path(__file__).resolve().parents[2]

# Every deliberately bad record of k12tune.demo.data, by the file it is in, its line and the rule.
EXPECTED_REJECTS = {
    ("demo_sft/alpaca.json", "duplicate"),
    ("demo_sft/alpaca.json", "repetition"),
    ("demo_sft/alpaca.json", "length"),  # "好" -> "好"
    ("demo_sft/alpaca.json", "wrong_type"),
    ("demo_sft/prompt_response.jsonl", "malformed_json"),
    ("demo_sft/prompt_response.jsonl", "missing_field"),
    ("demo_sft/prompt_response.jsonl", "duplicate"),  # width variant: a duplicate after NFKC
    ("demo_sft/prompt_response.jsonl", "invalid_utf8"),
    ("demo_sft/sharegpt.jsonl", "unsupported_role"),
    ("demo_pref/pairs.json", "pair_identical"),
    ("demo_pref/pairs.json", "missing_field"),
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo run once in a fresh folder, with its printed output."""
    import contextlib
    import io
    import os

    where = tmp_path_factory.mktemp("demo_run")
    printed = io.StringIO()
    before = Path.cwd()
    os.chdir(where)
    try:
        with contextlib.redirect_stdout(printed):
            assert main(["--configs", str(ROOT / "configs" / "demo")]) == 0
    finally:
        os.chdir(before)
    return where / DEMO_ROOT, printed.getvalue()


def test_every_step_ran_and_printed_its_command(demo: tuple[Path, str]) -> None:
    _, printed = demo
    for number, step in enumerate(STEPS, 1):
        assert f"[{number}/{len(STEPS)}] $ {step.command(ROOT / 'configs' / 'demo')}\n" in printed
        assert f"[{number}/{len(STEPS)}] done in " in printed
    stages = [s.stage for s in STEPS if not s.dry_run]
    assert stages.index("train_sft") < stages.index("train_orpo") < stages.index("train_dpo")
    assert stages.index("train_dpo") < stages.index("eval_harness") < stages.index("export_lora")
    # Each stage said at start which config it resolved and where it writes.
    config = ROOT / "configs" / "demo" / "dpo.yaml"
    assert f"train_dpo: config {config}; writing to demo/outputs/align\nresolved config:\n" in printed
    # ... and at the end what it wrote.
    assert "wrote:\n  demo/data_proc/sft_train.jsonl\n" in printed
    assert "adapter and tokenizer: demo/outputs/align\n" in printed
    assert "written: demo/outputs/adapters/k12-dpo/ (README.md, " in printed
    assert "wrote:\n  demo/outputs/report.html\n  demo/outputs/report.md\n" in printed
    # The last step answers one question from base + SFT + DPO, streamed to stdout.
    answer = printed.split("its words are noise)\n", 1)[1].split(f"[{len(STEPS)}/{len(STEPS)}] done in")[0]
    assert answer.strip()
    assert "demo finished in " in printed


def test_every_stage_finished(demo: tuple[Path, str]) -> None:
    root, _ = demo
    verify_manifest(root / "data_proc", "prepare_data")
    verify_manifest(root / "outputs" / "sft", "train_sft")
    verify_manifest(root / "outputs" / "align_orpo", "train_orpo")
    verify_manifest(root / "outputs" / "align", "train_dpo")
    verify_manifest(root / "outputs" / "eval", "eval_harness")
    verify_manifest(root / "outputs" / "adapters" / "k12-dpo", "export_lora")


def test_the_bad_records_are_caught_and_everything_is_accounted_for(demo: tuple[Path, str]) -> None:
    root, _ = demo
    report = json.loads((root / "data_proc" / "report.json").read_text(encoding="utf-8"))
    assert (report["sft"]["read"], report["sft"]["kept"], report["sft"]["rejected"]) == (240, 230, 10)
    assert (report["pref"]["read"], report["pref"]["kept"], report["pref"]["rejected"]) == (217, 215, 2)
    assert report["sft"]["accounted"] and report["pref"]["accounted"]
    rejects = [json.loads(line) for line in (root / "data_proc" / "rejected.jsonl").open(encoding="utf-8")]
    found = Counter((str(Path(r["file"]).relative_to("demo/data_raw")), r["rule"]) for r in rejects)
    assert set(found) == EXPECTED_REJECTS
    assert sum(found.values()) == 12
    assert found[("demo_sft/alpaca.json", "length")] == 2  # the one-character answer and the essay
    # Kept records cover the four subjects and both languages.
    train = [json.loads(line) for line in (root / "data_proc" / "sft_train.jsonl").open(encoding="utf-8")]
    systems = {r["messages"][0]["content"] for r in train if r["messages"][0]["role"] == "system"}
    for subject in ("数学", "语文", "英语"):
        assert any(subject in s for s in systems), subject
    texts = [turn["content"] for r in train for turn in r["messages"]]
    for science in ("光合作用", "密度", "化学式", "细胞"):  # science lessons come without a system prompt
        assert any(science in t for t in texts), science
    for stage in ("小学", "初中", "高中"):
        assert any(stage in s for s in systems), stage
    # The 20 lessons taught in English are kept (allow_english_fallback) and tagged en.
    assert report["sft"]["lang"] == {"en": 20, "zh": 210}
    assert sum(report["pref"]["lang"].values()) == 215 and report["pref"]["lang"]["en"] >= 20


def test_training_moved_the_losses(demo: tuple[Path, str]) -> None:
    root, _ = demo
    for run in ("sft", "align_orpo", "align"):
        rows = read_log(root / "outputs" / run / "train_log.jsonl")
        losses = [r["loss"] for r in rows if "loss" in r]
        assert len(losses) >= 4 and losses[-1] < losses[0], (run, losses)
        evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
        assert len(evals) == 2
    for run in ("align_orpo", "align"):
        rows = read_log(root / "outputs" / run / "train_log.jsonl")
        accuracies = [r["eval_rewards/accuracies"] for r in rows if "eval_rewards/accuracies" in r]
        assert accuracies and accuracies[-1] > 0.5, (run, accuracies)


def test_eval_compares_the_four_models_and_the_export_passed(demo: tuple[Path, str]) -> None:
    root, _ = demo
    results = json.loads((root / "outputs" / "eval" / "results.json").read_text(encoding="utf-8"))
    assert list(results["k12tune"]["runs"]) == ["base", "sft", "dpo", "orpo"]
    manifest = verify_manifest(root / "outputs" / "adapters" / "k12-dpo", "export_lora")
    assert manifest["counts"]["check"]["passed"] is True
    assert manifest["counts"]["eval"] is not None  # the card carries the demo's DPO scores


def test_the_report_shows_the_whole_run(demo: tuple[Path, str]) -> None:
    root, _ = demo
    markdown = (root / "outputs" / "report.md").read_text(encoding="utf-8")
    html = (root / "outputs" / "report.html").read_text(encoding="utf-8")
    assert "Every stage's output was found finished." in markdown
    assert "| SFT | 240 | 230 | 10 | yes | 206 | 24 |" in markdown
    assert "| preference | 217 | 215 | 2 | yes |" in markdown
    for rule in ("malformed_json", "invalid_utf8", "wrong_type", "pair_identical", "unsupported_role"):
        assert f"`{rule}`" in markdown and f"<code>{rule}</code>" in html
    assert "demo/data_raw/demo_sft/prompt_response.jsonl:44" in markdown  # the non-UTF-8 line
    for run in ("sft", "dpo", "orpo"):
        assert (root / "outputs" / "report_assets" / f"curves_{run}.png").is_file()
        assert f"![{run}: train_{run}" in markdown
    assert "| cmmlu | acc |" in markdown
    assert "`demo/outputs/adapters/k12-dpo/adapter_model.safetensors`" in markdown
    assert "accelerate launch -m scripts.train_sft --config configs/sft.yaml --dry-run false" in markdown
    assert html.count('src="data:image/png;base64,') == 6 and "http" not in html.split("<body", 1)[1]


def test_a_second_run_replaces_only_its_own_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mine.txt").write_text("not the demo's")
    with pytest.raises(SystemExit, match="was not written by the demo"):
        main(["--configs", str(ROOT / "configs" / "demo")])
    assert (tmp_path / "demo" / "mine.txt").is_file()
    with pytest.raises(SystemExit, match="run the demo from the repository root"):
        main([])
    assert MARKER.startswith(".")
