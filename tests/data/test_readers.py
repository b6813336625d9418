"""Readers: JSONL, JSON array and Parquet files and hub datasets -> RawItems with provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import blake3
import orjson
import pytest

import k12tune.data.readers as readers
from k12tune.data.readers import (
    JudgedProgress,
    RawItem,
    ReadStats,
    find_data_files,
    iter_file,
    iter_hub,
    iter_jsonl,
    iter_source,
    jsonl_chunks,
)
from k12tune.data.specs import SourceSpec
from k12tune.errors import DataError
from k12tune.records import Origin

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def read(path: Path, stats: ReadStats | None = None, source: str = "src") -> list[RawItem]:
    return list(iter_file(path, source, stats if stats is not None else ReadStats()))


def blake3_of(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


def orjson_error(raw: bytes) -> str:
    with pytest.raises(orjson.JSONDecodeError) as info:
        orjson.loads(raw)
    return str(info.value)


@pytest.fixture(params=[None, 7], ids=["default_chunk", "chunk7"])
def chunk(request, monkeypatch):
    """Run a test with the real chunk size and with 7-byte chunks (everything straddles)."""
    if request.param is not None:
        monkeypatch.setattr(readers, "_CHUNK", request.param)
    return request.param


# --- JSON lines ---------------------------------------------------------------------------------


def test_jsonl_lines_blank_lines_and_hash(tmp_path, chunk):
    path = tmp_path / "a.jsonl"
    content = (
        '{"q": "一", "n": 1}\n'  # line 1
        "\n"  # line 2: blank
        '{"q": "二 😀", "n": 2}\n'  # line 3
        "   \t\n"  # line 4: blank (white space only)
        "\n"  # line 5: blank
        "[1, 2]\r\n"  # line 6: CRLF line end, a non-object value is still read
        '{"q": "last", "n": 3}'  # line 7: no trailing newline
    )
    path.write_bytes(content.encode("utf-8"))
    stats = ReadStats()
    items = list(iter_jsonl(path, "src", stats))
    assert [(i.value, i.origin, i.error) for i in items] == [
        ({"q": "一", "n": 1}, Origin("src", str(path), 1), None),
        ({"q": "二 😀", "n": 2}, Origin("src", str(path), 3), None),
        ([1, 2], Origin("src", str(path), 6), None),
        ({"q": "last", "n": 3}, Origin("src", str(path), 7), None),
    ]
    assert stats.blank_lines == 3
    assert stats.files == {str(path): blake3_of(path)}
    assert stats.empty_files == []


def test_jsonl_malformed_line_continues(tmp_path, chunk):
    path = tmp_path / "bad.jsonl"
    bad = '{"q": "未闭合", '
    path.write_text(f'{{"n": 1}}\n{bad}\n{{"n": 3}}\n', encoding="utf-8")
    items = read(path)
    assert [i.origin.line for i in items] == [1, 2, 3]
    assert items[0].value == {"n": 1} and items[0].error is None
    assert items[1].value == bad
    assert items[1].error == ("malformed_json", orjson_error(bad.encode("utf-8")))
    assert items[2].value == {"n": 3} and items[2].error is None


def test_jsonl_invalid_utf8_names_byte_and_column(tmp_path, chunk):
    path = tmp_path / "bytes.jsonl"
    # line 2: `{"q": "a` is 8 bytes, so the 0xff byte is column 9.
    path.write_bytes(b'{"n": 1}\n{"q": "a\xffb"}\n{"n": 3}\n')
    items = read(path)
    assert [i.origin.line for i in items] == [1, 2, 3]
    assert items[1].error == ("invalid_utf8", "byte 0xff at column 9")
    assert items[1].value == '{"q": "a\ufffdb"}'
    assert [items[0].value, items[2].value] == [{"n": 1}, {"n": 3}]
    assert items[0].error is None and items[2].error is None


def test_jsonl_invalid_utf8_column_counts_bytes(tmp_path):
    path = tmp_path / "bytes.jsonl"
    # "数" is 3 bytes: `{"q": "数` is 10 bytes, the bad byte is column 11.
    path.write_bytes('{"q": "数'.encode() + b'\xfe"}\n')
    (item,) = read(path)
    assert item.error == ("invalid_utf8", "byte 0xfe at column 11")
    assert item.origin.line == 1


def test_jsonl_bom_ignored(tmp_path, chunk):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"n": 1}\n{"n": 2}\n')
    stats = ReadStats()
    items = read(path, stats)
    assert [(i.value, i.origin.line, i.error) for i in items] == [
        ({"n": 1}, 1, None),
        ({"n": 2}, 2, None),
    ]
    # The hash is of the file's bytes, BOM included.
    assert stats.files == {str(path): blake3_of(path)}


def test_json_suffix_holding_json_lines_is_read_as_jsonl(tmp_path, chunk):
    path = tmp_path / "lines.json"
    path.write_text('{"n": 1}\n\n{"n": 2}\n', encoding="utf-8")
    stats = ReadStats()
    items = read(path, stats)
    assert [(i.value, i.origin.line, i.error) for i in items] == [
        ({"n": 1}, 1, None),
        ({"n": 2}, 3, None),
    ]
    assert stats.blank_lines == 1


def test_jsonl_source_name_in_origin(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"n": 1}\n', encoding="utf-8")
    (item,) = read(path, source="my_source")
    assert item.origin == Origin("my_source", str(path), 1)


# --- JSON arrays --------------------------------------------------------------------------------

ELEMENTS: list[Any] = [
    {
        "instruction": "介绍一下光合作用",
        "input": "",
        "output": "植物利用光能，把二氧化碳和水\n变成有机物。",
    },
    {"q": "emoji 😀🎉 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "nested": {"list": [1, 2.5, None, True, False], "empty": {}}},
    'a bare string element with "quotes" and a ] bracket, and a , comma',
    12345678901234567890,
    [],
    {"long": "长" * 40, "tags": ["数学", "物理", "化学"]},
    -0.125,
    None,
]


def expected_pretty_lines(elements: list[Any]) -> list[int]:
    """`json.dumps(list, indent=2)`: '[' on line 1, then each element takes as many lines as
    its own indent=2 form."""
    lines, line = [], 2
    for element in elements:
        lines.append(line)
        line += json.dumps(element, indent=2, ensure_ascii=False).count("\n") + 1
    return lines


def test_json_array_pretty_printed_lines(tmp_path, chunk):
    path = tmp_path / "arr.json"
    path.write_text(json.dumps(ELEMENTS, indent=2, ensure_ascii=False), encoding="utf-8")
    stats = ReadStats()
    items = read(path, stats)
    assert [i.value for i in items] == json.loads(path.read_text(encoding="utf-8"))
    assert [i.error for i in items] == [None] * len(ELEMENTS)
    assert [i.origin.line for i in items] == expected_pretty_lines(ELEMENTS)
    # Sanity-check the expectation itself on the first two elements.
    assert expected_pretty_lines(ELEMENTS)[:2] == [2, 7]
    assert {i.origin.file for i in items} == {str(path)}
    assert stats.files == {str(path): blake3_of(path)}
    assert stats.blank_lines == 0


def test_json_array_compact_single_line(tmp_path, chunk):
    path = tmp_path / "compact.json"
    path.write_text(json.dumps(ELEMENTS, ensure_ascii=False), encoding="utf-8")
    items = read(path)
    with open(path, encoding="utf-8") as handle:
        assert [i.value for i in items] == json.load(handle)
    assert [i.origin.line for i in items] == [1] * len(ELEMENTS)


def test_json_array_across_tiny_chunks_matches_json_load(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK", 7)
    # Many elements of multi-byte text (3- and 4-byte UTF-8) so that characters, strings and
    # numbers all straddle 7-byte chunk boundaries at every possible offset.
    elements = [{"i": i, "t": "汉字😀é" * (i % 5), "x": [i * 1.5, str(i) * 3]} for i in range(60)]
    path = tmp_path / "many.json"
    path.write_text(
        "\ufeff\n\n" + json.dumps(elements, indent=2, ensure_ascii=False) + "\n\n", encoding="utf-8"
    )
    stats = ReadStats()
    items = read(path, stats)
    with open(path, encoding="utf-8-sig") as handle:
        assert [i.value for i in items] == json.load(handle)
    # The BOM-prefixed text starts with two blank lines, so '[' is on line 3.
    assert [i.origin.line for i in items] == [n + 2 for n in expected_pretty_lines(elements)]
    assert stats.files == {str(path): blake3_of(path)}


def test_json_array_elements_separated_by_blank_lines_and_crlf(tmp_path, chunk):
    path = tmp_path / "crlf.json"
    path.write_bytes(b'[\r\n  {"n": 1},\r\n\r\n  {"n": 2}\r\n  ,{"n": 3}]\r\n')
    items = read(path)
    assert [(i.value, i.origin.line) for i in items] == [
        ({"n": 1}, 2),
        ({"n": 2}, 4),
        ({"n": 3}, 5),
    ]


def test_json_array_empty_array(tmp_path, chunk):
    path = tmp_path / "empty_array.json"
    path.write_text("[\n]\n", encoding="utf-8")
    stats = ReadStats()
    assert read(path, stats) == []
    assert stats.files == {str(path): blake3_of(path)}
    assert stats.empty_files == []


def malformed_cases() -> list[tuple[str, str]]:
    """(file text, the error's message text after 'file:line: ')."""
    return [
        # An element whose error is on its third line (line 5 of the file).
        ('[\n  {"a": 1},\n  {"b": 2,\n   "c": 3,\n   "d": }\n]\n', "invalid JSON in array element"),
        # An element that is never finished: json places the error after the last newline.
        ('[\n  {"a": 1},\n  {"b": 2\n', "invalid JSON in array element"),
        # A bad element on the first line after '['.
        ('[\n  {"a": 1,,}\n]\n', "invalid JSON in array element"),
    ]


@pytest.mark.parametrize(
    ("text", "what"), malformed_cases(), ids=["error_on_third_line", "unfinished", "first_element"]
)
def test_json_array_malformed_element_names_file_and_line(tmp_path, chunk, text, what):
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    # json itself says where the text stops being JSON, and why.
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(DataError) as info:
        read(path)
    assert str(info.value) == f"{path}:{expected.value.lineno}: {what}: {expected.value.msg}"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[\n  {"a": 1},\n  {"b": 2}\n  {"c": 3}\n]\n', 4, "expected ',' or ']' between array elements"),
        ('[\n  {"a": 1},\n  {"b": 2}\n\n', 5, "JSON array is not closed with ']'"),
        ('[\n  {"a": 1}\n]\n\nextra\n', 5, "unexpected data after the closing ']'"),
    ],
    ids=["missing_comma", "not_closed", "trailing_data"],
)
def test_json_array_structure_errors_name_file_and_line(tmp_path, chunk, text, line, message):
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read(path)
    assert str(info.value) == f"{path}:{line}: {message}"


def test_json_array_invalid_utf8_element_rejected_others_load(tmp_path, chunk):
    path = tmp_path / "bytes.json"
    path.write_bytes(b'[\n  {"a": "x"},\n  {"b": "y\xffz",\n   "c": 1},\n  {"d": "\xe6\x95\xb0"}\n]\n')
    items = read(path)
    assert [(i.origin.line, i.error) for i in items] == [
        (2, None),
        (3, ("invalid_utf8", "element holds bytes that are not UTF-8")),
        (5, None),
    ]
    assert items[0].value == {"a": "x"}
    assert items[1].value == '{"b": "y\ufffdz",\n   "c": 1}'
    assert items[2].value == {"d": "数"}


def test_json_array_lone_surrogate_escape_is_malformed(tmp_path, chunk):
    path = tmp_path / "surrogates.json"
    lone = r'{"b": "\ud800 alone"}'
    pair = r'{"c": "\ud83d\ude00"}'
    path.write_text(f'[\n  {{"a": 1}},\n  {lone},\n  {pair}\n]\n', encoding="utf-8")
    items = read(path)
    assert [i.origin.line for i in items] == [2, 3, 4]
    assert items[0].value == {"a": 1} and items[0].error is None
    assert items[1].value == lone
    assert items[1].error == ("malformed_json", orjson_error(lone.encode("utf-8")))
    assert items[2].value == {"c": "😀"} and items[2].error is None


def test_json_array_non_object_elements_are_items(tmp_path):
    path = tmp_path / "mixed.json"
    path.write_text('[1, "two", [3], null, {"five": 5}]', encoding="utf-8")
    assert [i.value for i in read(path)] == [1, "two", [3], None, {"five": 5}]


# --- Parquet ------------------------------------------------------------------------------------


def test_parquet_rows_in_order(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"问题 {i}", "response": f"回答 {i}", "n": i} for i in range(5000)]
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=1500)
    stats = ReadStats()
    items = read(path, stats)
    assert [i.value for i in items] == rows
    assert [i.origin for i in items] == [Origin("src", str(path), n) for n in range(1, 5001)]
    assert all(i.error is None for i in items)
    assert stats.files == {str(path): blake3_of(path)}


def test_parquet_corrupt_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError) as info:
        read(path)
    assert str(info.value).startswith(f"{path}: not a readable Parquet file (")


# --- empty files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["e.jsonl", "e.json", "e.parquet"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    stats = ReadStats()
    assert read(path, stats) == []
    assert stats.empty_files == [str(path)]
    assert stats.files == {str(path): blake3.blake3(b"").hexdigest()}
    assert stats.blank_lines == 0


# --- find_data_files ----------------------------------------------------------------------------


def test_find_data_files_recursive_sorted_filtered(tmp_path):
    root = tmp_path / "src"
    for rel in [
        "z.jsonl",
        "a/b.json",
        "a/c/deep.parquet",
        "a/c/UPPER.JSON",
        "m.jsonl",
        "notes.txt",
        "a/data.csv",
        "a/backup.json.bak",
        "README.md",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("", encoding="utf-8")
    (root / "dir.jsonl").mkdir()  # a folder with a data suffix is not a file
    assert find_data_files(root) == [
        root / "a" / "b.json",
        root / "a" / "c" / "UPPER.JSON",
        root / "a" / "c" / "deep.parquet",
        root / "m.jsonl",
        root / "z.jsonl",
    ]


def test_find_data_files_only_other_files(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DataError) as info:
        find_data_files(folder)
    assert str(info.value) == (
        f"{folder} holds no .jsonl/.json/.parquet files (found: notes.txt); "
        "add data files or remove the folder to load this source from the hub"
    )


def test_find_data_files_empty_folder(tmp_path):
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    with pytest.raises(DataError) as info:
        find_data_files(folder)
    assert str(info.value) == (
        f"{folder} holds no .jsonl/.json/.parquet files (it is empty); "
        "add data files or remove the folder to load this source from the hub"
    )


# --- iter_source / iter_hub ---------------------------------------------------------------------


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """Hub access off (env and the already-imported config), caches under tmp_path."""
    import datasets
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return datasets


def _no_hub(*args, **kwargs):
    raise AssertionError("datasets.load_dataset must not be called when local files exist")


def test_iter_source_local_folder_under_raw_dir(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", _no_hub)
    raw_dir = tmp_path / "data_raw"
    folder = raw_dir / "my_src"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.jsonl").write_text('{"n": 2}\n{"n": 3}\n', encoding="utf-8")
    (folder / "sub" / "a.json").write_text('[\n  {"n": 1}\n]\n', encoding="utf-8")
    (folder / "notes.txt").write_text("ignored", encoding="utf-8")
    spec = SourceSpec(name="my_src", hub_id="org/never-used")
    stats = ReadStats()
    items = list(iter_source(spec, raw_dir, stats))
    # Sorted paths: b.jsonl < sub/a.json.
    assert [(i.value, i.origin) for i in items] == [
        ({"n": 2}, Origin("my_src", str(folder / "b.jsonl"), 1)),
        ({"n": 3}, Origin("my_src", str(folder / "b.jsonl"), 2)),
        ({"n": 1}, Origin("my_src", str(folder / "sub" / "a.json"), 2)),
    ]
    assert stats.files == {
        str(folder / "b.jsonl"): blake3_of(folder / "b.jsonl"),
        str(folder / "sub" / "a.json"): blake3_of(folder / "sub" / "a.json"),
    }


def test_iter_source_local_dir_overrides_raw_dir(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", _no_hub)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "x.jsonl").write_text('{"n": 1}\n', encoding="utf-8")
    spec = SourceSpec(name="src", hub_id="org/never-used", local_dir=str(folder))
    items = list(iter_source(spec, tmp_path / "data_raw", ReadStats()))
    assert [(i.value, i.origin) for i in items] == [({"n": 1}, Origin("src", str(folder / "x.jsonl"), 1))]


def test_iter_source_existing_folder_without_data_is_an_error(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", _no_hub)
    folder = tmp_path / "data_raw" / "src"
    folder.mkdir(parents=True)
    spec = SourceSpec(name="src", hub_id="org/never-used")
    with pytest.raises(DataError) as info:
        list(iter_source(spec, tmp_path / "data_raw", ReadStats()))
    assert str(info.value).startswith(f"{folder} holds no .jsonl/.json/.parquet files (it is empty)")


def test_iter_source_hub_when_folder_absent(tmp_path, offline_hub):
    hub_folder = tmp_path / "hub_dataset"
    hub_folder.mkdir()
    rows = [{"prompt": f"问题{i}", "response": f"回答{i}"} for i in range(1, 6)]
    (hub_folder / "train.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    spec = SourceSpec(name="remote", hub_id=str(hub_folder))
    stats = ReadStats()
    items = list(iter_source(spec, tmp_path / "data_raw", stats))
    where = f"hub:{hub_folder}/default/train"
    assert [(i.value, i.origin, i.error) for i in items] == [
        (row, Origin("remote", where, n), None) for n, row in enumerate(rows, start=1)
    ]
    assert stats.files == {}


def test_iter_hub_unknown_dataset(tmp_path, offline_hub):
    hub_id = "k12tune-test-no-such-org/no-such-dataset"
    spec = SourceSpec(name="ghost", hub_id=hub_id)
    with pytest.raises(DataError) as info:
        list(iter_source(spec, tmp_path / "data_raw", ReadStats()))
    message = str(info.value)
    assert message.startswith(f"source ghost: cannot load hub:{hub_id}/default/train (")
    assert message.endswith("; on a machine without hub access put its files under data_raw/ghost/")


def test_iter_hub_without_hub_id(tmp_path):
    spec = SourceSpec(name="nohub")
    with pytest.raises(DataError) as info:
        list(iter_hub(spec))
    assert str(info.value) == "source nohub: no local files and no hub_id to load from"


# --- real sample data ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("alpaca_zh_demo.json", 800),
        ("prompt_response_zh.jsonl", 150),
        ("alpaca_en_demo.json", 300),
        ("messages_en.jsonl", 100),
        ("glaive_toolcall_zh_demo.json", 50),
    ],
)
def test_real_sft_files_load(name, count):
    path = DATA / "sft" / name
    stats = ReadStats()
    items = read(path, stats, source="real")
    assert len(items) == count
    assert [i.error for i in items] == [None] * count
    assert all(isinstance(i.value, dict) for i in items)
    assert stats.files == {str(path): blake3_of(path)}
    assert stats.empty_files == []
    if name.endswith(".jsonl"):
        assert [i.origin.line for i in items] == list(range(1, count + 1))
        assert stats.blank_lines == 0
    else:
        with open(path, encoding="utf-8") as handle:
            assert [i.value for i in items] == json.load(handle)
        lines = [i.origin.line for i in items]
        assert lines[0] == 2 and lines == sorted(set(lines))


def test_real_sft_folder_through_find_data_files():
    files = find_data_files(DATA / "sft")
    assert [p.name for p in files] == [
        "alpaca_en_demo.json",
        "alpaca_zh_demo.json",
        "glaive_toolcall_zh_demo.json",
        "messages_en.jsonl",
        "prompt_response_zh.jsonl",
    ]


# --- JSONL chunks (the pipeline's unit of parallel work) ------------------------------------------


def reference_jsonl(data: bytes, name: str) -> tuple[list[tuple[Any, Origin, Any]], int]:
    """JSONL read the obvious way: the whole file split on "\\n" (BOM dropped)."""
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    tail = lines.pop()
    items, blank = [], 0
    for number, line in enumerate(lines, 1):
        if line.strip():
            item = readers.parse_line(line, Origin("src", name, number))
            items.append((item.value, item.origin, item.error))
        else:
            blank += 1
    if tail.strip():
        item = readers.parse_line(tail, Origin("src", name, len(lines) + 1))
        items.append((item.value, item.origin, item.error))
    return items, blank


JSONL_PIECES = [
    '{"q": "一二三", "n": 1}',
    '{"q": "😀 emoji across a chunk", "n": 2}',
    "[1, 2]",
    '{"q": "broken',
    "   ",
    "",
    '{"q": "tab\\t and é"}',
]


@pytest.mark.parametrize("size", [1 << 22, 3, 7, 64])
def test_jsonl_chunks_equal_reading_the_whole_file(tmp_path, monkeypatch, size):
    monkeypatch.setattr(readers, "_CHUNK", size)
    rng = __import__("random").Random(size)
    for case in range(30):
        pieces = [rng.choice(JSONL_PIECES).encode() for _ in range(rng.randrange(0, 25))]
        if rng.random() < 0.3:
            pieces.append(b'{"q": "\xff\xfe bad bytes"}')
        endings = [rng.choice([b"\n", b"\r\n"]) for _ in pieces]
        data = b"".join(p + e for p, e in zip(pieces, endings, strict=True))
        if rng.random() < 0.5:
            data = data.rstrip(b"\r\n")  # no trailing newline
        if rng.random() < 0.3:
            data = b"\xef\xbb\xbf" + data
        path = tmp_path / f"c{case}.jsonl"
        path.write_bytes(data)
        stats = ReadStats()
        chunks = list(readers.jsonl_chunks(path, stats))
        assert stats.files == {str(path): blake3_of(path)}
        # Chunks are whole lines, in order, covering the file (after a BOM).
        starts = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        assert [c.start for c in chunks] == [starts, *(c.end for c in chunks[:-1])][: len(chunks)]
        assert (chunks[-1].end if chunks else starts) == len(data)
        assert all(data[c.end - 1 : c.end] == b"\n" for c in chunks[:-1])
        got, blank = [], 0
        for c in chunks:
            items, n_blank = readers.read_chunk(c, "src")
            got += [(i.value, i.origin, i.error) for i in items]
            blank += n_blank
        assert (got, blank) == reference_jsonl(data, str(path)), data


def test_jsonl_chunk_line_numbers_in_rejections(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK", 5)
    path = tmp_path / "a.jsonl"
    # A truncated line, then a 3-byte character cut after 2 bytes: the chunk size splits both.
    path.write_bytes('{"a": 1}\r\n\n{"b": "二\n'.encode() + b'{"c": "\xe4\xb8"}\n{"d": 4}')
    items = read(path)
    assert [(i.origin.line, i.error[0] if i.error else None) for i in items] == [
        (1, None),
        (3, "malformed_json"),
        (4, "invalid_utf8"),
        (5, None),
    ]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_plain_lines_need_only_stripping(tmp_path):
    """A line marked plain holds no string that `clean_text` would change beyond stripping it;
    every character `clean_text` removes or rewrites, raw or escaped, unmarks its line."""
    from k12tune.data.normalize import clean_text

    changed = [*map(chr, [*range(0x00, 0x09), 0x0B, 0x0C, 0x0D, *range(0x0E, 0x20), *range(0x7F, 0xA0)])]
    changed += ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
    harmless = [
        *'aé你好 ，。\t\n\\"/',
        "\u00a0",
        "\u3000",
        "\u2028",
        "😀",
        "\u200a",
        "\u200e",
        "\u2061",
        "\ufefe",
    ]
    rng = __import__("random").Random(0)
    lines = []
    for _ in range(400):
        chars = [rng.choice(harmless) for _ in range(rng.randrange(0, 8))]
        if rng.random() < 0.3:
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(changed))
        text = "".join(chars)
        lines.append(json.dumps({"k": text, "l": [text, 1]}, ensure_ascii=rng.random() < 0.2))
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    items = read(path)
    assert len(items) == len(lines)
    for item in items:
        strings = _strings(item.value)
        if item.plain:
            assert all(clean_text(s) == s.strip() for s in strings), strings
        elif not any(c in s for s in strings for c in changed):
            assert "\\u" in json.dumps(item.value)  # escaped non-ASCII: unmarked, cleaned in full
    assert sum(item.plain for item in items) > 100
    # Each character `clean_text` changes unmarks its line, written raw or as an escape.
    for ch in changed:
        for ensure_ascii in (False, True):
            path.write_text(json.dumps({"k": f"a{ch}b"}, ensure_ascii=ensure_ascii) + "\n", encoding="utf-8")
            assert [item.plain for item in read(path)] == [False], (hex(ord(ch)), ensure_ascii)
    # Items that do not come from a JSONL chunk are never marked.
    assert not any(item.plain for item in read_array_of(tmp_path, ["x"]))


def read_array_of(tmp_path: Path, values: list[Any]) -> list[RawItem]:
    path = tmp_path / "arr.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return read(path)


class _Bar:
    def __init__(self, total: int) -> None:
        self.total, self.n, self.updates, self.closed = total, 0, [], False

    def update(self, n: int) -> None:
        self.n += n
        self.updates.append(n)

    def close(self) -> None:
        self.closed = True


def test_judged_progress_advances_each_files_bar_to_its_size_then_closes_it(tmp_path, monkeypatch):
    """The bar follows the chunks judged (the reading runs ahead), BOM included."""
    bars: dict[str, _Bar] = {}
    monkeypatch.setattr(
        readers, "_progress", lambda path: bars.setdefault(path.name, _Bar(path.stat().st_size))
    )
    monkeypatch.setattr(readers, "_CHUNK", 16)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    line = b'{"prompt": "x", "response": "y"}\n'
    first.write_bytes(b"\xef\xbb\xbf" + line * 3)
    second.write_bytes(b'{"k": 1}\n' * 5)
    chunks = [c for path in (first, second) for c in jsonl_chunks(path, ReadStats())]
    with JudgedProgress() as progress:
        for chunk in chunks[:-1]:
            progress.advance(chunk)
        assert bars["a.jsonl"].closed and not bars["b.jsonl"].closed
        assert bars["a.jsonl"].n == first.stat().st_size
        assert bars["a.jsonl"].updates == [3 + len(line), len(line), len(line)]
    assert bars["b.jsonl"].closed  # on leaving, short of its end
    assert bars["b.jsonl"].n == chunks[-2].end < second.stat().st_size
