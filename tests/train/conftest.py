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


def write_data(folder: Path, kind: str, train: list[dict], val: list[dict]) -> Path:
    """<kind>_train/<kind>_val JSONL plus the manifest a finished prepare_data leaves; rows get
    an id, a source and lang zh unless they carry their own."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{kind}_train.jsonl", f"{kind}_val.jsonl"]
    for name, rows in zip(names, (train, val), strict=True):
        with open(folder / name, "w", encoding="utf-8") as handle:
            for i, row in enumerate(rows):
                record = {"id": f"r{i}", "source": "test", "lang": "zh", **row}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    write_manifest(folder, stage="prepare_data", config={}, inputs={}, outputs=names, counts={}, libraries=())
    return folder


def write_sft_data(folder: Path, train: list[dict], val: list[dict]) -> Path:
    return write_data(folder, "sft", train, val)


def pair(question: str, good: str, bad: str, lang: str = "zh") -> dict:
    return {
        "lang": lang,
        "prompt": [{"role": "user", "content": question}],
        "chosen": [{"role": "assistant", "content": good}],
        "rejected": [{"role": "assistant", "content": bad}],
    }


# Each memorisable question with its right answer (chosen) and a wrong one (rejected).
WRONG = [
    "一加一等于三。",
    "三角形有五条边。",
    "水在零度会沸腾。",
    "太阳从西边升起。",
    "一年有七个季节。",
    "中国的首都是上海。",
    "五乘以二等于七。",
    "植物只需要石头。",
]
PAIRS = [pair(q, a, w) for (q, a), w in zip(MEMORISABLE, WRONG, strict=True)]


@pytest.fixture
def pref_data(tmp_path: Path) -> Path:
    return write_data(tmp_path / "pref_proc", "pref", PAIRS, PAIRS[:2])


@pytest.fixture
def memorisable_data(tmp_path: Path) -> Path:
    rows = [conversation(q, a) for q, a in MEMORISABLE]
    return write_sft_data(tmp_path / "data_proc", rows, rows[:2])
