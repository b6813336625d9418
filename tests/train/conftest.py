"""Fixtures for the training stages: a tiny Qwen2 base built offline from the real sample
data's texts (once per session), and small data folders marked finished by prepare_data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from k12tune.manifest import write_manifest

# Short K12 conversations the tiny model can learn by heart in a few dozen steps.
MEMORISABLE = [
    ("一加一等于几？", "一加一等于二。"),
    ("三角形有几条边？", "三角形有三条边。"),
    ("水在零度会怎样？", "水在零度会结冰。"),
    ("太阳从哪边升起？", "太阳从东边升起。"),
    ("一年有几个季节？", "一年有四个季节。"),
    ("中国的首都是哪里？", "中国的首都是北京。"),
    ("五乘以二是多少？", "五乘以二等于十。"),
    ("植物需要什么才能生长？", "植物需要阳光、水和空气。"),
]


def conversation(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def write_sft_data(folder: Path, train: list[dict], val: list[dict]) -> Path:
    """sft_train/sft_val JSONL plus the manifest a finished prepare_data leaves."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("sft_train.jsonl", train), ("sft_val.jsonl", val)):
        with open(folder / name, "w", encoding="utf-8") as handle:
            for i, row in enumerate(rows):
                handle.write(
                    json.dumps({"id": f"r{i}", "source": "test", "lang": "zh", **row}, ensure_ascii=False)
                )
                handle.write("\n")
    write_manifest(
        folder,
        stage="prepare_data",
        config={},
        inputs={},
        outputs=["sft_train.jsonl", "sft_val.jsonl"],
        counts={},
        libraries=(),
    )
    return folder


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    from k12tune.tiny import build_tiny_base

    texts = []
    with open(shared_data / "sft" / "prompt_response_zh.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts.append(f"{record['prompt']}\n{record['response']}")
    texts += [f"{q}\n{a}" for q, a in MEMORISABLE]
    return build_tiny_base(tmp_path_factory.mktemp("tiny_base"), texts)


@pytest.fixture
def memorisable_data(tmp_path: Path) -> Path:
    rows = [conversation(q, a) for q, a in MEMORISABLE]
    return write_sft_data(tmp_path / "data_proc", rows, rows[:2])
