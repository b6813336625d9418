"""A manifest records each output's SHA-256: hashed from the file, or as the stage took it while
writing the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from k12tune.manifest import write_manifest


def test_outputs_are_hashed_unless_the_stage_gives_their_digest(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"a\n")
    (tmp_path / "b.jsonl").write_bytes(b"b\n")
    given = hashlib.sha256(b"what the stage wrote").hexdigest()
    write_manifest(
        tmp_path,
        stage="s",
        config={},
        inputs={},
        outputs=["b.jsonl", "a.jsonl"],
        counts={},
        libraries=(),
        output_digests={"a.jsonl": given},
    )
    outputs = orjson.loads((tmp_path / "manifest.json").read_bytes())["outputs"]
    assert outputs == {"a.jsonl": given, "b.jsonl": hashlib.sha256(b"b\n").hexdigest()}
