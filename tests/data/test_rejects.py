"""The rejects file's lines: put together from cached pieces, each must be exactly the JSON
object that orjson writes for the whole row; a batch's lines merge with others by position."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from k12tune.data.rejects import RejectLines, reject_line_of_json
from k12tune.records import Origin


@pytest.mark.parametrize(
    ("origin", "rule", "detail"),
    [
        (Origin("synthetic", "/data/part-000.jsonl", 12), "zh_share", "conversation: zh_share 0.000 < 0.3"),
        (Origin("hub", "hub:Mxode/Chinese-Instruct", None), "length", "prompt: 3 code points"),
        (Origin('a "quoted" 源', "C:\\数据\\file\n.json", 0), "malformed_json", 'bad "escape" \\u12 \t end'),
    ],
)
def test_a_reject_line_is_the_row_as_orjson_writes_it(origin: Origin, rule: str, detail: str) -> None:
    record = orjson.dumps({"messages": [{"role": "user", "content": "你好"}]})
    row = {
        "stage": "sft",
        "source": origin.source,
        "file": origin.file,
        "line": origin.line,
        "rule": rule,
        "detail": detail,
        "record": orjson.Fragment(record),
    }
    for _ in range(2):  # the second time from the cache
        line = reject_line_of_json("sft", origin, rule, detail, record)
        assert line == orjson.dumps(row) + b"\n"
        assert orjson.loads(line)["record"] == orjson.loads(record)


def lines_at(positions: list[int]) -> RejectLines:
    lines = [f"line at {p}\n".encode() for p in positions]
    ends = np.cumsum([len(line) for line in lines], dtype=np.int64)
    return RejectLines(b"".join(lines), ends, np.array(positions, dtype=np.int64))


@pytest.mark.parametrize(
    ("base", "extra"),
    [
        ([3, 5, 9], [(0, b"x\n"), (7, b"y\n"), (4, b"z\n"), (12, b"w\n")]),  # before, between, after
        ([], [(2, b"a\n"), (1, b"b\n")]),
        ([1, 2], []),
    ],
)
def test_lines_merge_with_others_in_position_order(base: list[int], extra: list[tuple[int, bytes]]) -> None:
    merged = lines_at(base).with_lines(extra)
    expected = sorted([*lines_at(base).items(), *extra])
    assert merged.items() == expected
    assert merged.blob == b"".join(line for _, line in expected)
    assert merged.positions.tolist() == [p for p, _ in expected]
    assert len(merged) == len(base) + len(extra)
