"""Write the demo's raw files: `python -m k12tune.demo.data demo/data_raw`.

The lessons (`lessons.py`: maths, Chinese, science and English from grade 1 to 12, written for
this project) are written in every shape the loaders support, so the demo needs no download:
alpaca JSON, prompt/response JSONL, OpenAI messages, sharegpt conversations, and preference pairs
as sharegpt dicts (DPO-En-Zh-20k's shape), aliases, plain strings and message lists. The traps of
real data are there too, each one something the cleaner must catch: a malformed JSON line, a
record with a missing field, a field of the wrong type, a non-UTF-8 byte, an empty file, exact
and width-variant duplicates, repetitive text, a too-short and a too-long answer, a tool-call
conversation and an identical preference pair.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from k12tune.demo.lessons import (
    IDIOMS,
    Lesson,
    chinese,
    english,
    english_lessons,
    equations,
    fractions,
    rectangles,
    right_triangles,
    science,
    sequences,
    word_problems,
)


def _jsonl(path: Path, rows: list[Any]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def follow_up(lesson: Lesson) -> dict[str, Any]:
    """A two-turn lesson: the student asks for a simpler explanation of the first step."""
    first_step = lesson.answer.split("。")[0]
    return {
        "messages": [
            {"role": "system", "content": lesson.system},
            {"role": "user", "content": lesson.question},
            {"role": "assistant", "content": lesson.answer},
            {"role": "user", "content": "能再讲得简单一点吗？"},
            {"role": "assistant", "content": f"当然可以。关键是第一步：{first_step}。记住这一步就行。"},
        ]
    }


def write_sft(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    problems = word_problems()
    zh = chinese()
    alpaca = [
        {"instruction": x.question, "input": "", "output": x.answer, "system": x.system}
        for x in [*problems[:40], *rectangles(), *fractions(), *zh[:12]]
    ]
    alpaca.append(dict(alpaca[0]))  # exact duplicate
    alpaca.append({"instruction": "请重复。", "input": "", "output": "哈" * 200})  # repetitive
    alpaca.append({"instruction": "好", "input": "", "output": "好"})  # too short
    alpaca.append(
        {"instruction": "请写一篇作文。", "input": "", "output": "春天来了，" + "小草绿了，花儿开了，" * 250}
    )
    alpaca.append({"instruction": "圆的面积公式是什么？", "input": "", "output": ["S = πr²"]})  # wrong type
    (folder / "alpaca.json").write_text(json.dumps(alpaca, ensure_ascii=False, indent=2), encoding="utf-8")

    facts = science()
    rows = [{"id": f"science-{i}", "prompt": x.question, "response": x.answer} for i, x in enumerate(facts)]
    # The same lesson with full-width digits and an ideographic space: a duplicate after NFKC.
    rows.append(
        {
            "id": "science-dup",
            "prompt": facts[1].question + "\u3000",
            "response": facts[1].answer.replace("100", "１００"),
        }
    )
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.insert(3, '{"prompt": "这一行的JSON没有写完", "response": ')  # malformed JSON
    lines.insert(5, json.dumps({"prompt": "只有问题，没有回答的记录"}, ensure_ascii=False))  # missing field
    payload = "\n".join(lines).encode("utf-8") + b"\n"
    payload += b'{"prompt": "\xff\xfe bad bytes", "response": "x"}\n'  # not UTF-8
    (folder / "prompt_response.jsonl").write_bytes(payload)

    _jsonl(
        folder / "messages.jsonl",
        [follow_up(x) for x in [*problems[40:], *equations(), *right_triangles(), *sequences()]],
    )

    sharegpt = [
        {
            "conversations": [
                {"from": "system", "value": x.system},
                {"from": "human", "value": x.question},
                {"from": "gpt", "value": x.answer},
            ]
        }
        for x in [*zh[12:], *english()]
    ]
    sharegpt.append(
        {
            "conversations": [
                {"from": "human", "value": "帮我查一下明天北京的天气。"},
                {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "北京"}}'},
                {"from": "observation", "value": '{"weather": "晴"}'},
                {"from": "gpt", "value": "明天北京是晴天。"},
            ]
        }
    )
    _jsonl(folder / "sharegpt.jsonl", sharegpt)
    (folder / "empty.jsonl").write_bytes(b"")


def write_sft_en(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"instruction": x.question, "output": x.answer} for x in english_lessons()]
    (folder / "english.json").write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")


def write_pref(folder: Path) -> None:
    """Chinese pairs in four shapes: the worked answer is chosen, the weak one rejected."""
    folder.mkdir(parents=True, exist_ok=True)
    maths = [
        *word_problems()[:45],
        *rectangles(),
        *fractions(),
        *equations(),
        *right_triangles(),
        *sequences(),
    ]
    pairs: list[dict[str, Any]] = [
        {
            "conversations": [{"from": "system", "value": x.system}, {"from": "human", "value": x.question}],
            "chosen": {"from": "gpt", "value": x.answer},
            "rejected": {"from": "gpt", "value": x.weak},
        }
        for x in maths
    ]
    pairs += [
        {"question": x.question, "response_chosen": x.answer, "response_rejected": x.weak} for x in science()
    ]
    pairs += [{"prompt": x.question, "chosen": x.answer, "rejected": x.weak} for x in chinese()]
    pairs += [
        {
            "prompt": [{"role": "system", "content": x.system}, {"role": "user", "content": x.question}],
            "chosen": [{"role": "assistant", "content": x.answer}],
            "rejected": [{"role": "assistant", "content": x.weak}],
        }
        for x in english()
    ]
    same = "1加1等于2，因为一个加一个是两个。"
    pairs.append({"prompt": "1加1等于几？请讲解。", "chosen": same, "rejected": same})  # identical
    pairs.append({"prompt": "2加2等于几？", "chosen": "2加2等于4，因为两个加两个是四个。"})  # no rejected
    (folder / "pairs.json").write_text(json.dumps(pairs, ensure_ascii=False, indent=2), encoding="utf-8")


def write_pref_en(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": x.question, "chosen": x.answer, "rejected": x.weak} for x in english_lessons()]
    _jsonl(folder / "pairs_en.jsonl", rows)


def write_demo_raw(raw_dir: Path) -> None:
    write_sft(raw_dir / "demo_sft")
    write_sft_en(raw_dir / "demo_sft_en")
    write_pref(raw_dir / "demo_pref")
    write_pref_en(raw_dir / "demo_pref_en")


def _choices(right: str, wrong: list[str], i: int) -> tuple[list[str], str]:
    """Four options with the right one at position i % 4, and its letter."""
    options = wrong[:3]
    options.insert(i % 4, right)
    return options, "ABCD"[i % 4]


def cmmlu_rows() -> dict[str, list[list[str]]]:
    """Demo questions for two CMMLU K12 subjects, in CMMLU's CSV columns (index, Question, A-D,
    Answer): word problems for elementary_mathematics, idiom meanings for elementary_chinese."""
    maths = []
    for i, lesson in enumerate(word_problems()[:30]):
        q = lesson.question
        right = int(re.search(r"\d+", lesson.weak).group())
        wrong = [str(right + d) for d in (1, -1, 10)]
        options, answer = _choices(str(right), wrong, i)
        maths.append([str(i), q, *options, answer])
    chinese = []
    for i, (idiom, meaning) in enumerate(IDIOMS):
        others = [m for j, (_, m) in enumerate(IDIOMS) if j != i]
        wrong = [others[(i + k) % len(others)] for k in (0, 3, 6)]
        options, answer = _choices(meaning, wrong, i)
        chinese.append([str(i), f"成语“{idiom}”的意思是", *options, answer])
    return {"elementary_mathematics": maths, "elementary_chinese": chinese}


def write_demo_eval(eval_dir: Path) -> None:
    """`<eval_dir>/cmmlu/{dev,test}/<subject>.csv`: 5 few-shot rows per subject in dev, the
    rest in test, laid out as CMMLU publishes them (eval_harness reads it instead of the hub)."""
    import csv

    for subject, rows in cmmlu_rows().items():
        for split, part in (("dev", rows[:5]), ("test", rows[5:])):
            folder = eval_dir / "cmmlu" / split
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / f"{subject}.csv", "w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
                writer.writerows(part)


def write_demo_data(raw_dir: Path) -> None:
    """Everything the demo reads: the training sources and, under `eval/`, the eval copy."""
    write_demo_raw(raw_dir)
    write_demo_eval(raw_dir / "eval")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "demo/data_raw")
    write_demo_data(target)
    print(f"demo raw data written to {target}/")
