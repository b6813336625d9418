"""The compiled JSON writers against orjson, which wrote every output line before them."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import orjson

from k12tune.config.data import DataConfig
from k12tune.data import kernels
from k12tune.data.batchtext import ROLE_NAME_BOUNDS, ROLE_NAMES, Columns
from k12tune.data.filters import Failures
from k12tune.data.judge import Judge, JudgeSettings, hex_ids
from k12tune.data.rejects import record_json, reject_line_of_json
from k12tune.data.split import record_id
from k12tune.records import ROLES, Origin, PrefRecord, SFTRecord

ALPHABET = [chr(c) for c in range(0x80)] + [
    "\x85",
    "\u2028",
    "\ufeff",
    "é",
    "你",
    "，",
    "😀",
    "𠀀",
    '"',
    "\\",
]


def text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 20)))


def record(rng: random.Random, stage: str) -> SFTRecord | PrefRecord:
    def messages(n: int) -> list[dict[str, str]]:
        return [{"role": rng.choice(ROLES), "content": text(rng)} for _ in range(n)]

    origin = Origin("src", "f.jsonl", 1)
    if stage == "sft":
        return SFTRecord(messages(rng.randrange(1, 4)), origin)
    return PrefRecord(messages(rng.randrange(1, 3)), messages(1), messages(1), origin)


def payload(body: dict) -> dict:
    """An output record (`to_json()` form) as the rejects file shows it."""
    del body["id"], body["source"], body["lang"]
    return body


def test_output_and_reject_lines_are_what_orjson_writes() -> None:
    rng = random.Random(3)
    for stage in ("sft", "pref"):
        judge = Judge(stage, JudgeSettings.of(DataConfig()))
        records = [record(rng, stage) for _ in range(300)]
        columns = Columns.of_records(records, range(len(records)))
        layout, cps = columns.layout, columns.texts.cps
        capacity = kernels.json_capacity(cps, layout.roles, layout.part_messages, ROLE_NAMES)
        encoding = (judge.part_keys, judge.part_key_bounds, ROLE_NAMES, ROLE_NAME_BOUNDS, capacity)
        chosen = [k for k in range(len(records)) if rng.random() < 0.7]
        rng.shuffle(chosen)
        digests = b"".join(hashlib.sha256(str(k).encode()).digest() for k in chosen)
        is_zh = np.array([rng.random() < 0.5 for _ in chosen])
        source = '源 "quoted"'
        lines, ends = kernels.json_lines(
            cps, *layout.arrays(), *layout.raw_arrays(), np.asarray(chosen, dtype=np.int64),
            hex_ids(digests), is_zh,
            np.frombuffer(orjson.dumps(source), dtype=np.uint8), *encoding,
        )  # fmt: skip
        expected = []
        for j, k in enumerate(chosen):
            r = records[k]
            r.id, r.lang = record_id(digests[32 * j : 32 * j + 32]), "zh" if is_zh[j] else "en"
            r.origin = Origin(source, "f.jsonl", 1)
            expected.append(orjson.dumps(r.to_json()) + b"\n")
        assert lines.tobytes() == b"".join(expected)
        assert ends.tolist() == np.cumsum([len(line) for line in expected]).tolist()
        # A duplicate's reject is cut out of its output line, not parsed and dumped again.
        for line in expected:
            assert record_json(line, source) == orjson.dumps(payload(orjson.loads(line)))

        # The rejects file's lines, for records of two files at various lines, in position
        # order whatever order the rules dropped them in.
        for k, r in enumerate(records):
            r.origin = Origin(source, f"part-{k % 2}.jsonl", [0, 7, 1234567890][k % 3])
        columns = Columns.of_records(records, rng.sample(range(1000), len(records)))
        failed = [k for k in range(len(records)) if rng.random() < 0.5]
        first, second = failed[::2], failed[1::2]
        details = ["too short", 'a "quoted" \\ 细节']
        failures = [
            ("length", Failures(np.array(first), np.array([k % 2 for k in first]), details)),
            ("zh_share", Failures(np.array(second), np.zeros(len(second), dtype=np.int64), details[:1])),
        ]
        rejects = judge._reject_lines(source, columns, failures, capacity)
        rule_of = {k: ("length", details[k % 2]) for k in first}
        rule_of |= {k: ("zh_share", details[0]) for k in second}
        expected = [
            (
                int(columns.positions[k]),
                reject_line_of_json(
                    stage, records[k].origin, *rule_of[k], orjson.dumps(payload(records[k].to_json()))
                ),
            )
            for k in sorted(failed, key=lambda k: columns.positions[k])
        ]
        assert rejects.items() == expected
