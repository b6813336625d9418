"""Small local copies of the four default tasks, each in its published format, for eval tests.

CMMLU is the real sample in ../shared/data/eval/cmmlu (linked, never copied); C-Eval, HellaSwag
and WinoGrande are written here with their real columns: C-Eval's `val/<subject>_val.csv` and
`dev/<subject>_dev.csv` (id, question, A-D, answer; dev adds explanation), HellaSwag's records
(ind, activity_label, ctx_a, ctx_b, ctx, endings, source_id, split, split_type, label as a
string) and WinoGrande's (sentence with a blank, option1, option2, answer "1"/"2").
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

CEVAL_SUBJECTS = ("middle_school_physics", "high_school_chemistry")


def _ceval_rows(subject: str, count: int, *, dev: bool) -> list[dict[str, str]]:
    rows = []
    for i in range(count):
        row = {
            "id": str(i),
            "question": f"{subject} 第{i + 1}题：下列说法正确的是",
            "A": f"选项甲{i}",
            "B": f"选项乙{i}",
            "C": f"选项丙{i}",
            "D": f"选项丁{i}",
            "answer": "ABCD"[i % 4],
        }
        if dev:
            row["explanation"] = f"1. 解析{i}"
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def hellaswag_rows(count: int, split: str) -> list[dict]:
    return [
        {
            "ind": i,
            "activity_label": "Making tea",
            "ctx_a": f"A person boils water number {i}.",
            "ctx_b": "then they",
            "ctx": f"A person boils water number {i}. then they",
            "endings": ["pour it on tea.", "eat the kettle.", "fly away.", "[title] sing loudly."],
            "source_id": f"activitynet~v_{i}",
            "split": split,
            "split_type": "indomain",
            "label": str(i % 4),
        }
        for i in range(count)
    ]


def winogrande_rows(count: int) -> list[dict]:
    return [
        {
            "sentence": f"The cup did not fit in the box {i} because the _ was too big.",
            "option1": "cup",
            "option2": "box",
            "answer": "1" if i % 2 == 0 else "2",
        }
        for i in range(count)
    ]


@pytest.fixture
def eval_copies(tmp_path: Path, shared_data: Path) -> Path:
    """data_raw/eval with cmmlu (6 real subjects), ceval-valid (2 subjects: 4 val and 5 dev
    questions each), hellaswag (3 validation, 2 train) and winogrande (4 validation, 2 train)."""
    root = tmp_path / "data_raw" / "eval"
    root.mkdir(parents=True)
    (root / "cmmlu").symlink_to(shared_data / "eval" / "cmmlu", target_is_directory=True)
    for subject in CEVAL_SUBJECTS:
        _write_csv(root / "ceval-valid" / "val" / f"{subject}_val.csv", _ceval_rows(subject, 4, dev=False))
        _write_csv(root / "ceval-valid" / "dev" / f"{subject}_dev.csv", _ceval_rows(subject, 5, dev=True))
    _write_jsonl(root / "hellaswag" / "validation.jsonl", hellaswag_rows(3, "val"))
    _write_jsonl(root / "hellaswag" / "train.jsonl", hellaswag_rows(2, "train"))
    _write_jsonl(root / "winogrande" / "validation.jsonl", winogrande_rows(4))
    _write_jsonl(root / "winogrande" / "train.jsonl", winogrande_rows(2))
    return root
