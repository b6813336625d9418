"""Preference pairs from prepare_data's files, measured in tokens and checked before training.

Every line is accounted for: a pair is kept, or rejected with a rule, its file and line (in
`rejected_pairs.jsonl` beside the adapter, and counted in the summary and manifest):
- `bad_json`: the line is not a JSON object;
- `malformed`: prompt / chosen / rejected are not the message lists prepare_data writes;
- `prompt_too_long`: the rendered prompt leaves fewer than `min_answer_tokens` of
  `max_length` for the answer. TRL's DPO drops such pairs without a word, and its ORPO keeps
  them with empty answers, whose mean log-probability is 0/0: NaN, and a loss that reads 0.

Token counts use the base's own chat template and tokenizer (all texts of a file in one batched
call): `prompt_tokens` is the prompt with the assistant header, an answer's tokens are the
rendered prompt + answer minus the prompt, and `pair_tokens`, what the longer row of the pair
occupies after truncation, orders the length buckets of the language mix.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from k12tune.records import ROLES

REJECTS = "rejected_pairs.jsonl"


@dataclass
class PairFile:
    """The kept pairs of one file as columns, and the rejections."""

    columns: dict[str, list[Any]]
    read: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return len(self.columns["prompt"])

    def counts(self) -> dict[str, Any]:
        langs = Counter(self.columns["lang"])
        return {
            "read": self.read,
            "kept": self.kept,
            "rejected": dict(sorted(Counter(r["rule"] for r in self.rejected).items())),
            "lang": dict(sorted(langs.items())),
        }


def _messages_problem(value: Any, name: str, last_role: str | None) -> str | None:
    if not isinstance(value, list) or not value:
        return f"{name} is not a non-empty list of messages"
    for i, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            return f"{name}[{i}] is not a {{role, content}} message with role in {list(ROLES)}"
    if last_role is not None and value[-1]["role"] != last_role:
        return f"{name} must end with a {last_role} message, ends with {value[-1]['role']}"
    return None


def _problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "not a JSON object"
    for name, last in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
        problem = _messages_problem(row.get(name), name, last)
        if problem:
            return problem
    return None


def read_pairs(path: Path, tokenizer: Any, *, max_length: int, min_answer_tokens: int) -> PairFile:
    rows, lines = [], []
    result = PairFile({k: [] for k in ("prompt", "chosen", "rejected", "lang", "pair_tokens")})

    def reject(line: int, rule: str, detail: str) -> None:
        result.rejected.append({"file": str(path), "line": line, "rule": rule, "detail": detail})

    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            result.read += 1
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                reject(number, "bad_json", str(exc))
                continue
            problem = _problem(row)
            if problem:
                reject(number, "malformed", problem)
                continue
            rows.append(row)
            lines.append(number)
    if not rows:
        return result

    def render(conversations: list[list[dict[str, str]]], prompt: bool) -> list[int]:
        texts = tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=prompt)
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    prompt_tokens = render([r["prompt"] for r in rows], True)
    chosen_tokens = render([r["prompt"] + r["chosen"] for r in rows], False)
    rejected_tokens = render([r["prompt"] + r["rejected"] for r in rows], False)
    for row, line, p, c, r in zip(rows, lines, prompt_tokens, chosen_tokens, rejected_tokens, strict=True):
        room = max_length - p
        if room < min_answer_tokens:
            reject(
                line,
                "prompt_too_long",
                f"prompt is {p} tokens, leaving {room} of max_length {max_length} for the answer "
                f"(min_answer_tokens {min_answer_tokens})",
            )
            continue
        result.columns["prompt"].append(row["prompt"])
        result.columns["chosen"].append(row["chosen"])
        result.columns["rejected"].append(row["rejected"])
        result.columns["lang"].append(str(row.get("lang") or "unknown"))
        result.columns["pair_tokens"].append(min(max(c, r), max_length))
    return result


def rejects_jsonl(files: list[PairFile]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for f in files for r in f.rejected).encode(
        "utf-8"
    )


def to_dataset(pairs: PairFile) -> Any:
    from datasets import Dataset

    return Dataset.from_dict(pairs.columns)
