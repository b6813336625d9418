"""End-to-end runs of the data stage on the real sample data in ../shared/data."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import orjson
import pytest

from k12tune.config.data import DataConfig
from k12tune.data import pipeline
from k12tune.data.pipeline import prepare_data
from k12tune.digest import file_digest
from k12tune.errors import DataError
from k12tune.manifest import verify_manifest
from k12tune.parallel import WorkerPool

OUTPUTS = (
    "sft_train.jsonl",
    "sft_val.jsonl",
    "pref_train.jsonl",
    "pref_val.jsonl",
    "rejected.jsonl",
    "report.json",
)


def link_sources(raw: Path, shared: Path, layout: dict[str, list[str]]) -> None:
    for name, files in layout.items():
        (raw / name).mkdir(parents=True)
        for rel in files:
            os.symlink(shared / rel, raw / name / Path(rel).name)


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def real_config(tmp_path: Path, shared_data: Path) -> DataConfig:
    raw = tmp_path / "raw"
    link_sources(
        raw,
        shared_data,
        {
            "zh": ["sft/alpaca_zh_demo.json", "sft/prompt_response_zh.jsonl"],
            "en": ["sft/alpaca_en_demo.json", "sft/messages_en.jsonl"],
            "tools": ["sft/glaive_toolcall_zh_demo.json"],
            "dpo": ["pref/dpo_zh_demo.json", "pref/dpo_en_demo.json"],
        },
    )
    return DataConfig(
        raw_dir=str(raw),
        out_dir=str(tmp_path / "out"),
        sft_sources=[{"name": "zh"}, {"name": "en", "lang_hint": "en"}, {"name": "tools"}],
        pref_sources=[{"name": "dpo", "lang_hint": "mixed"}],
        val_fraction=0.05,
    )


def test_real_sample_data_end_to_end(real_config: DataConfig, shared_data: Path) -> None:
    report = prepare_data(real_config)
    out = Path(real_config.out_dir)
    sft, pref = report["sft"], report["pref"]
    # Accounting: every record read is kept or rejected, in the report and in the files.
    assert sft["read"] == 800 + 150 + 300 + 100 + 50
    assert pref["read"] == 240 + 240
    for stage in (sft, pref):
        assert stage["accounted"] and stage["read"] == stage["kept"] + stage["rejected"]
    rejected = read_jsonl(out / "rejected.jsonl")
    for name, stage in (("sft", sft), ("pref", pref)):
        train, val = read_jsonl(out / f"{name}_train.jsonl"), read_jsonl(out / f"{name}_val.jsonl")
        assert len(train) == stage["train_lines"] == stage["train_records"]  # weights are 1
        assert len(val) == stage["val_records"]
        assert len(train) + len(val) + sum(r["stage"] == name for r in rejected) == stage["read"]
    # Dedup across files and shapes: alpaca_zh repeats 5 of its records; prompt_response_zh
    # repeats its first 50, one alpaca record (its line 8) and one of its own (line 97 = 87).
    dupes = collections.Counter(Path(r["file"]).name for r in rejected if r["rule"] == "duplicate")
    assert dupes["alpaca_zh_demo.json"] == 5
    assert dupes["prompt_response_zh.jsonl"] == 52
    pr_dupe_lines = sorted(
        r["line"] for r in rejected if r["rule"] == "duplicate" and "prompt_response" in r["file"]
    )
    assert pr_dupe_lines == [8, 97, *range(101, 151)]
    # English is dropped without the fallback; tool turns are rejected with a reason.
    assert sft["sources"]["en"]["kept"] == 0
    tool_rules = sft["sources"]["tools"]["rules"]
    glaive = json.loads((shared_data / "sft" / "glaive_toolcall_zh_demo.json").read_text(encoding="utf-8"))
    with_tools = sum(
        any(t["from"] not in {"human", "gpt", "system"} for t in r["conversations"]) for r in glaive
    )
    assert tool_rules["unsupported_role"] == with_tools
    # Over-long pairs are counted under the length rule, naming the part.
    assert pref["rules"]["length"] > 0
    assert all(
        r["detail"].split(":")[0] in {"prompt", "chosen", "rejected"}
        for r in rejected
        if r["stage"] == "pref" and r["rule"] == "length"
    )
    # Records carry id, source, lang; pairs keep system turns and multi-turn history.
    train = read_jsonl(out / "pref_train.jsonl")
    assert all(set(r) == {"id", "source", "lang", "prompt", "chosen", "rejected"} for r in train)
    assert any(r["prompt"][0]["role"] == "system" for r in train)
    ids = [r["id"] for r in train + read_jsonl(out / "pref_val.jsonl")]
    assert len(ids) == len(set(ids))
    # Every rejection names its source, file and line.
    assert all(r["source"] and r["file"] and r["line"] >= 1 and r["rule"] for r in rejected)
    verify_manifest(out, "prepare_data")


def test_english_fallback_keeps_and_tags(real_config: DataConfig) -> None:
    real_config.clean.allow_english_fallback = True
    report = prepare_data(real_config)
    en = report["sft"]["sources"]["en"]
    assert en["rules"].get("zh_share", 0) == 0
    assert en["lang"]["en"] > 250
    train = read_jsonl(Path(real_config.out_dir) / "sft_train.jsonl")
    assert {r["lang"] for r in train} == {"zh", "en"}
    # Both pools last to the end of the zh share: the first 100 lines hold 70 zh within one.
    first = [r["lang"] for r in train[:100]]
    assert abs(first.count("zh") - 70) <= 1
    # English multi-turn pairs now survive, with their history intact.
    pairs = read_jsonl(Path(real_config.out_dir) / "pref_train.jsonl")
    multi = [r for r in pairs if [m["role"] for m in r["prompt"]][:3] == ["user", "assistant", "user"]]
    assert multi and all(r["prompt"][-1]["role"] == "user" for r in pairs)


def test_two_runs_are_byte_identical(real_config: DataConfig, tmp_path: Path) -> None:
    prepare_data(real_config)
    first = {name: (Path(real_config.out_dir) / name).read_bytes() for name in (*OUTPUTS, "manifest.json")}
    real_config.out_dir = str(tmp_path / "out2")
    prepare_data(real_config)
    second = {name: (Path(real_config.out_dir) / name).read_bytes() for name in first}
    for name in OUTPUTS:
        assert first[name] == second[name], name
    # The manifest records the config, whose out_dir differs; everything else is the same.
    m1, m2 = json.loads(first["manifest.json"]), json.loads(second["manifest.json"])
    assert m1["outputs"] == m2["outputs"] and m1["inputs"] == m2["inputs"]


def test_worker_processes_give_byte_identical_outputs(
    real_config: DataConfig, tmp_path: Path, monkeypatch
) -> None:
    # Small batches, so that many are in flight at once and arrive out of order, and small
    # windows of the training file's copy, so that the workers share it.
    real_config.batch_size = 37
    monkeypatch.setattr(pipeline, "_WINDOW", 29)
    real_config.workers = 1
    prepare_data(real_config)
    one = {name: (Path(real_config.out_dir) / name).read_bytes() for name in OUTPUTS}
    real_config.out_dir, real_config.workers = str(tmp_path / "out2"), 2
    prepare_data(real_config)
    for name in OUTPUTS:
        assert (Path(real_config.out_dir) / name).read_bytes() == one[name], name
    # The outputs were hashed as they were written (the training file window by window): the
    # manifest's digests are the files' own.
    manifest = json.loads((Path(real_config.out_dir) / "manifest.json").read_text())
    assert sorted(manifest["outputs"]) == sorted(OUTPUTS)
    for name in OUTPUTS:
        assert manifest["outputs"][name] == file_digest(Path(real_config.out_dir) / name), name


@pytest.mark.parametrize("chunk", [None, 4096, 100_000])
def test_jsonl_chunk_size_changes_nothing(
    real_config: DataConfig, tmp_path: Path, monkeypatch, chunk: int | None
) -> None:
    """JSONL files travel to the workers as byte ranges of whole lines, not as batches: the
    outputs must not depend on where the ranges end, nor on the number of workers, including
    the position of weight rejects, written after the other rejects of their batch."""
    real_config.sft_sources = [
        {"name": "zh", "weight": 0.5},
        {"name": "en", "weight": 1.5, "lang_hint": "en"},
    ]
    real_config.clean.allow_english_fallback = True
    real_config.batch_size = 50
    prepare_data(real_config)
    reference = {name: (Path(real_config.out_dir) / name).read_bytes() for name in OUTPUTS}
    if chunk is not None:
        from k12tune.data import readers

        monkeypatch.setattr(readers, "_CHUNK", chunk)
    real_config.out_dir, real_config.workers = str(tmp_path / "out2"), 2
    prepare_data(real_config)
    for name in OUTPUTS:
        assert (Path(real_config.out_dir) / name).read_bytes() == reference[name], name
    # Within each batch of 50 records of a source, weight rejects follow the other rejects.
    rejected = read_jsonl(Path(real_config.out_dir) / "rejected.jsonl")
    zh_jsonl = [r for r in rejected if r["file"].endswith("prompt_response_zh.jsonl")]
    assert any(r["rule"] == "weight" for r in zh_jsonl)
    # prompt_response_zh.jsonl follows alpaca_zh_demo.json's 800 records in source "zh".
    keys = [((800 + r["line"] - 1) // 50, r["rule"] == "weight", r["line"]) for r in zh_jsonl]
    assert keys == sorted(keys)


def test_auto_workers_only_for_large_inputs(real_config: DataConfig, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "available_cpus", lambda: 16)
    assert pipeline.resolve_workers(real_config) == 1  # the sample data is a few MiB
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 1)
    assert pipeline.resolve_workers(real_config) == 8
    real_config.workers = 3
    assert pipeline.resolve_workers(real_config) == 3


def test_weight_zero_is_not_opened_and_weight_two_doubles(real_config: DataConfig, tmp_path: Path) -> None:
    real_config.sft_sources = [
        {"name": "zh", "weight": 2.0},
        {"name": "missing", "weight": 0, "hub_id": "no/such-dataset"},
    ]
    real_config.pref_sources = []
    real_config.val_fraction = 0.0
    report = prepare_data(real_config)
    sft = report["sft"]
    assert sft["skipped_sources"] == ["missing"]
    assert sft["train_lines"] == 2 * sft["train_records"]
    lines = read_jsonl(Path(real_config.out_dir) / "sft_train.jsonl")
    assert set(collections.Counter(r["id"] for r in lines).values()) == {2}


def test_a_failed_run_leaves_no_manifest_and_keeps_old_outputs(
    real_config: DataConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_data(real_config)
    out = Path(real_config.out_dir)
    before = (out / "sft_train.jsonl").read_bytes()

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline.TrainSpill, "write_in_order", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_data(real_config)
    assert not (out / "manifest.json").exists()
    assert (out / "sft_train.jsonl").read_bytes() == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # staging removed
    with pytest.raises(DataError, match=r"manifest\.json is missing"):
        verify_manifest(out, "prepare_data")


def test_manifest_detects_a_changed_output(real_config: DataConfig) -> None:
    prepare_data(real_config)
    out = Path(real_config.out_dir)
    with open(out / "sft_val.jsonl", "ab") as handle:
        handle.write(b"{}\n")
    with pytest.raises(DataError, match="changed after prepare_data"):
        verify_manifest(out, "prepare_data")


def test_bad_input_is_counted_not_fatal(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "bad"
    raw.mkdir(parents=True)
    good = {
        "instruction": "请解释什么是分数，并举一个例子。",
        "output": "分数表示把一个整体平均分成若干份，其中的一份或几份，例如二分之一。",
    }
    lines = [
        json.dumps(good, ensure_ascii=False).encode(),
        b'{"instruction": "broken',
        json.dumps({"instruction": 5, "output": "答案是五个苹果和三个梨。"}, ensure_ascii=False).encode(),
        json.dumps({"output": "只有回答没有问题的一条记录。"}, ensure_ascii=False).encode(),
        b'{"instruction": "\xff", "output": "x"}',
        b"[1, 2]",
    ]
    (raw / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (raw / "empty.jsonl").write_bytes(b"")
    cfg = DataConfig(
        raw_dir=str(tmp_path / "raw"),
        out_dir=str(tmp_path / "out"),
        sft_sources=[{"name": "bad"}],
        pref_sources=[],
        val_fraction=0,
    )
    report = prepare_data(cfg)
    rejected = read_jsonl(Path(cfg.out_dir) / "rejected.jsonl")
    assert [(r["line"], r["rule"]) for r in rejected] == [
        (2, "malformed_json"),
        (3, "wrong_type"),
        (4, "missing_field"),
        (5, "invalid_utf8"),
        (6, "not_an_object"),
    ]
    assert report["sft"]["read"] == 6 and report["sft"]["kept"] == 1
    assert report["inputs"]["empty_files"] == [str(raw / "empty.jsonl")]


def test_folder_without_data_files_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "raw" / "notes"
    folder.mkdir(parents=True)
    (folder / "readme.txt").write_text("no data here")
    cfg = DataConfig(
        raw_dir=str(tmp_path / "raw"),
        out_dir=str(tmp_path / "out"),
        sft_sources=[{"name": "notes"}],
        pref_sources=[],
    )
    with pytest.raises(
        DataError, match=r"notes holds no \.jsonl/\.json/\.parquet files \(found: readme\.txt\)"
    ):
        prepare_data(cfg)


def test_importing_the_stage_does_not_import_numba() -> None:
    """numba is loaded where a kernel runs: the main process, the dry run and --help skip it."""
    import subprocess
    import sys

    code = "import sys, k12tune.data.pipeline, k12tune.data.plan; sys.exit('numba' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_spill_files_are_deleted_by_the_workers(tmp_path: Path, workers: int) -> None:
    files = pipeline.LineFiles()
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(b"line\n")
        files.number(str(tmp_path / name))
    assert files.read(1, 0, 4) == b"line"
    with WorkerPool(workers, os.getpid) as pool:  # any picklable set-up
        files.remove(pool)
    assert list(tmp_path.iterdir()) == []
    assert files.fds == []
