"""The rejects file's line: put together from cached pieces, it must be exactly the JSON
object that orjson writes for the whole row."""

from __future__ import annotations

import orjson
import pytest

from k12tune.data.judge import reject_line_of_json
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
