"""The dry run judges a sample of each source and says how much of it each rule would drop."""

from __future__ import annotations

from pathlib import Path

import orjson

from k12tune.config.data import DataConfig
from k12tune.data.plan import data_plan


def test_the_plan_counts_the_sample_by_rule(tmp_path: Path) -> None:
    good = [
        {"prompt": f"什么是分数{i}？请举例说明。", "response": "分数表示整体的一部分，比如二分之一。"}
        for i in range(5)
    ]
    lines = [orjson.dumps(r) for r in good]
    lines += [
        lines[0],  # duplicate
        orjson.dumps({"prompt": "短", "response": "好"}),  # length
        orjson.dumps({"prompt": "What is a fraction?", "response": "It is a part of a whole."}),  # zh_share
        b'{"prompt": "broken',  # malformed_json
    ]
    folder = tmp_path / "raw" / "sft"
    folder.mkdir(parents=True)
    (folder / "part.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    cfg = DataConfig(
        raw_dir=str(tmp_path / "raw"),
        out_dir=str(tmp_path / "out"),
        sft_sources=[{"name": "sft"}],
        pref_sources=[],
    )
    plan = data_plan(cfg)
    assert "total 9 records; sample of 9: 56% kept" in plan
    assert "(dropped: malformed_json 1, length 1, zh_share 1, duplicate 1)" in plan
    assert not (tmp_path / "out").exists()
