"""The commands exactly as the README writes them, run in subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def demo_tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    result = run([sys.executable, "-m", "k12tune.demo.data", "demo/data_raw"], tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_dry_run_is_the_default_and_writes_nothing(tmp_path: Path) -> None:
    cwd = demo_tree(tmp_path)
    result = run([sys.executable, "-m", "scripts.prepare_data", "--config", "configs/demo/data.yaml"], cwd)
    assert result.returncode == 0, result.stderr
    assert "prepare_data plan (dry run" in result.stdout
    assert "demo/data_raw/demo_sft/alpaca.json (" in result.stdout
    assert "demo/data_proc/manifest.json" in result.stdout
    assert not (cwd / "demo" / "data_proc").exists()


def test_real_run_as_written_in_the_readme(tmp_path: Path) -> None:
    cwd = demo_tree(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "scripts.prepare_data",
        "--config",
        "configs/demo/data.yaml",
        "--dry-run",
        "false",
    ]
    result = run(cmd, cwd)
    assert result.returncode == 0, result.stderr
    out = cwd / "demo" / "data_proc"
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "pref_train.jsonl",
        "pref_val.jsonl",
        "rejected.jsonl",
        "report.json",
        "sft_train.jsonl",
        "sft_val.jsonl",
    ]
    assert "sft: read 240 = kept 230 + rejected 10" in result.stdout
    # At start: the config file, where it writes, and every resolved value (defaults included).
    assert "prepare_data: config configs/demo/data.yaml; writing to demo/data_proc" in result.stdout
    assert "resolved config:\n  raw_dir: demo/data_raw\n" in result.stdout
    assert "\n    max_rep_ratio_4gram: 0.6\n" in result.stdout
    # The same through the console command, with an override.
    console = Path(sys.executable).with_name("k12tune")
    result = run(
        [
            str(console),
            "prepare_data",
            "--config",
            "configs/demo/data.yaml",
            "--dry-run",
            "false",
            "clean.min_chars=1",
        ],
        cwd,
    )
    assert result.returncode == 0, result.stderr
    assert "sft: read 240 = kept 231 + rejected 9" in result.stdout  # "好"/"好" now passes
    assert "\n    min_chars: 1\n" in result.stdout


def test_config_errors_exit_2_with_the_key(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("val_fracton: 0.5\n")
    result = run([sys.executable, "-m", "scripts.prepare_data", "--config", "bad.yaml"], tmp_path)
    assert result.returncode == 2
    assert "unknown key 'val_fracton'" in result.stderr and "bad.yaml" in result.stderr
    result = run(
        [sys.executable, "-m", "scripts.prepare_data", "--config", "bad.yaml", "--dry-run", "maybe"], tmp_path
    )
    assert result.returncode == 2 and "expected true or false" in result.stderr


def test_help_and_stage_list(tmp_path: Path) -> None:
    result = run([sys.executable, "-m", "scripts.prepare_data", "--help"], tmp_path)
    assert result.returncode == 0
    assert "--dry-run" in result.stdout and "clean.max_rep_ratio_4gram" in result.stdout
    console = Path(sys.executable).with_name("k12tune")
    result = run([str(console)], tmp_path)
    assert result.returncode == 0 and "prepare_data" in result.stdout
    result = run([str(console), "nope"], tmp_path)
    assert result.returncode == 2 and "unknown stage 'nope'" in result.stderr


def test_importing_the_stage_imports_no_ml_library() -> None:
    code = (
        "import sys, k12tune.cli, k12tune.data.pipeline, k12tune.data.plan;"
        "bad = [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = run([sys.executable, "-c", code], ROOT)
    assert result.returncode == 0, result.stdout
