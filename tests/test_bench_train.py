"""bench/bench_train.py in its tiny CPU mode: the table's structure and the loss parity check.
Not a timed test: a step or two per row, only the shape of the output is asserted."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from bench.bench_train import (
    QWEN2_5_7B_INSTRUCT,
    bench_texts,
    conversation,
    search,
    step_flops,
    template_overhead,
    word_pool,
)
from k12tune.config.train import ALL_LINEAR
from k12tune.tiny import build_tokenizer
from k12tune.train.memory import KNOWN_SHAPES, ModelShape, lora_params

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_cpu_run_prints_the_table_and_passes_parity(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    command = [
        sys.executable, str(ROOT / "bench" / "bench_train.py"), "--model", "tiny",
        "--rows", "baseline,ours,liger,qlora,longest,dpo,orpo,parity", "--steps", "1", "--warmup-steps", "1",
        "--seq-len", "512", "--micro-batch", "1", "--parity-steps", "2", "--json", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    lines = done.stdout.splitlines()
    result = json.loads(lines[-1])
    table = [line for line in out.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    assert table[0].split(" | ")[2:4] == ["trained tokens/s", "x baseline"]
    cells = [line.strip("| ").split(" | ") for line in table[1:]]
    rows = {name: rest for name, *rest in cells}
    assert rows["baseline (TRL docs)"][2] == "1.00x"
    assert rows["ours"][2].endswith("x") and float(rows["ours"][1].replace(",", "")) > 0
    assert rows["ours"][5] == "n/a"  # no MFU on a CPU
    liger = rows["ours, + Liger kernels"][1]
    assert liger.startswith("unavailable: ") and "CUDA" in liger
    for name in ("QLoRA ours", "ours, longest context under 24 GiB"):
        assert rows[name][1].startswith("unavailable: "), name
    for kind in ("DPO", "ORPO"):
        assert rows[f"baseline {kind} (TRL defaults)"][2] == "1.00x"
        for name in (f"ours {kind}", f"ours {kind}, padding-free"):
            assert rows[name][2].endswith("x") and float(rows[name][1].replace(",", "")) > 0, name
    assert "loss parity" in done.stdout and done.stdout.count(": PASS") == 1
    assert result["parity"]["result"] == "PASS"
    assert result["parity"]["ours_eval_loss"] < result["parity"]["untrained_eval_loss"]
    assert "peak RSS" in result["meta"]["peak memory"] and "trl==" in result["meta"]["versions"]


def test_flops_formula_for_the_7b_shape() -> None:
    """4 N_frozen T + 6 N_lora T + 6 L d_att sum s^2, with the shape the script builds."""
    shape = ModelShape.from_config(QWEN2_5_7B_INSTRUCT)
    assert shape == KNOWN_SHAPES["Qwen/Qwen2.5-7B-Instruct"]
    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config.from_dict(QWEN2_5_7B_INSTRUCT))
    assert sum(p.numel() for p in model.parameters()) == shape.params() == 7_615_616_512
    n_lora = lora_params(shape, 16, list(ALL_LINEAR))
    n_frozen = shape.linear_params() + 152064 * 3584
    expected = 4 * n_frozen * 3000 + 6 * n_lora * 3000 + 6 * 28 * 3584 * (1000**2 + 2000**2)
    assert step_flops(shape, n_lora, [1000, 2000]) == expected


def test_longest_context_search_doubles_then_bisects_to_512_tokens() -> None:
    tried: list[int] = []

    def fits(length: int) -> int | None:
        tried.append(length)
        return length * 10 if length <= 11000 else None

    assert search(fits, 32768) == (10752, None, 107520)
    assert tried == [2048, 4096, 8192, 16384, 12288, 10240, 11264, 10752]
    assert search(lambda length: 1, 32768) == (32768, None, 1)


def test_synthetic_conversations_have_the_asked_token_counts() -> None:
    """Each random word is one token, so a conversation is as long as the histogram asked."""
    tokenizer = build_tokenizer(bench_texts())
    pool, rng, overhead = word_pool(tokenizer), random.Random(0), template_overhead(tokenizer)
    for content in (2, 17, 300, 2000):
        messages = conversation(tokenizer, pool, rng, content, 0.6)["messages"]
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        assert len(ids) == overhead + content
