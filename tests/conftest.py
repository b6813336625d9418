"""Shared fixtures. The real sample data lives in ../shared/data beside the checkout (CI has it
at the same place); tests read it in place and fail loudly when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        raise FileNotFoundError(
            f"{SHARED_DATA} is missing: the tests need ../shared/data beside the checkout"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A tiny Qwen2 base (padded vocabulary, Qwen2.5's template) whose tokenizer is trained on
    the real sample data's texts and the memorisable conversations."""
    import json

    from k12tune.tiny import build_tiny_base
    from tests.train.conftest import MEMORISABLE

    texts = []
    with open(shared_data / "sft" / "prompt_response_zh.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts.append(f"{record['prompt']}\n{record['response']}")
    texts += [f"{q}\n{a}" for q, a in MEMORISABLE]
    return build_tiny_base(tmp_path_factory.mktemp("tiny_base"), texts)


@pytest.fixture(scope="session")
def trained_adapters(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> dict[str, Path]:
    """Real train_sft and train_dpo outputs on the tiny base (DPO merged on the SFT model, the
    default start on a 16-bit base), for the stages that read adapters: {"sft": ..., "align": ...}."""
    from k12tune.train.align import run_alignment
    from k12tune.train.sft import run_sft
    from tests.train.conftest import MEMORISABLE, PAIRS, conversation, write_data
    from tests.train.test_align import align_config
    from tests.train.test_sft import sft_config

    root = tmp_path_factory.mktemp("trained")
    rows = [conversation(q, a) for q, a in MEMORISABLE]
    sft_data = write_data(root / "sft_proc", "sft", rows, rows[:2])
    pref_data = write_data(root / "pref_proc", "pref", PAIRS, PAIRS[:2])
    run_sft(sft_config(tiny_base, sft_data, root / "sft", max_steps=12, save_steps=100, eval_steps=100))
    align = align_config(
        "dpo",
        tiny_base,
        pref_data,
        root / "align",
        start={"sft_adapter": str(root / "sft")},
        train={"max_steps": 8, "save_steps": 100, "eval_steps": 100},
    )
    run_alignment(align)
    return {"sft": root / "sft", "align": root / "align"}
