"""The compiled SFT scanner against the Python path it accelerates (orjson + `to_sft`).

The contract: a line the scanner takes (FAST) gives exactly the messages that the Python path
gives; a line the Python path rejects is never taken; blank lines are what `bytes.strip`
leaves empty. Checked on every line of the shared data and on generated tricky lines.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import orjson
import pytest

from k12tune.config.data import DataConfig
from k12tune.data import sftscan
from k12tune.data.aliases import merged_aliases
from k12tune.data.converters import ConversionError, to_sft
from k12tune.data.pipeline import prepare_data
from k12tune.data.sftscan import BLANK, FAST, SKIP, SLOW, SftScanner
from k12tune.data.unicode_tables import unicode_tables
from k12tune.records import ROLES, Origin

ORIGIN = Origin("src", "f.jsonl", 1)


def python_path(line: bytes, aliases: dict) -> list | Exception:
    try:
        return to_sft(orjson.loads(line), ORIGIN, aliases).messages
    except (orjson.JSONDecodeError, ConversionError) as exc:
        return exc


def needs_only_stripping(line: bytes) -> bool:
    """Converts, and `str.strip` gives the same record as `clean_text`."""
    expected = python_path(line, merged_aliases({}))
    if isinstance(expected, Exception):
        return False
    return to_sft(orjson.loads(line), ORIGIN, merged_aliases({}), str.strip).messages == expected


def scan(lines: list[bytes], aliases: dict) -> tuple[np.ndarray, list[list[dict] | None]]:
    """Kinds per line, and the messages of each line the scanner took (None for the others).
    A message's raw bounds, where it has them, hold its content as orjson writes it."""
    data = b"\n".join(lines)
    scanner = SftScanner.of(aliases)
    line_ends, kinds, cps, text_bounds, counts, roles, bounds, raw_bounds = scanner.scan(
        np.frombuffer(data, dtype=np.uint8), unicode_tables().space
    )
    assert len(raw_bounds) == len(bounds)
    for m in np.flatnonzero(raw_bounds[0::2] >= 0).tolist():
        content = cps[bounds[2 * m] : bounds[2 * m + 1]].tobytes().decode("utf-32-le")
        assert data[raw_bounds[2 * m] : raw_bounds[2 * m + 1]] == orjson.dumps(content)[1:-1]
    assert len(kinds) == len(lines)
    newlines = (np.cumsum([len(line) + 1 for line in lines]) - 1).tolist()
    assert line_ends.tolist() == [*newlines[:-1], len(data)]
    out: list[list[dict] | None] = []
    m = r = 0
    for kind in kinds.tolist():
        if kind != FAST:
            out.append(None)
            continue
        messages = [
            {
                "role": ROLES[roles[j]],
                "content": cps[bounds[2 * j] : bounds[2 * j + 1]].tobytes().decode("utf-32-le"),
            }
            for j in range(m, m + counts[r])
        ]
        # The conversation text is the contents joined by "\n", as `batch_texts` lays it out.
        text = cps[text_bounds[r] : text_bounds[r + 1]].tobytes().decode("utf-32-le")
        assert text == "\n".join(msg["content"] for msg in messages)
        out.append(messages)
        m += counts[r]
        r += 1
    return kinds, out


def assert_agrees(lines: list[bytes], aliases: dict | None = None) -> np.ndarray:
    aliases = aliases or merged_aliases({})
    kinds, fast = scan(lines, aliases)
    for k, (line, kind, messages) in enumerate(zip(lines, kinds.tolist(), fast, strict=True)):
        if not line.strip():
            assert kind == (BLANK if k < len(lines) - 1 else SKIP), line
            continue
        expected = python_path(line, aliases)
        if kind == FAST:
            assert messages == expected, line
        else:
            assert kind == SLOW, line
    return kinds


def as_lines(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    if path.suffix == ".json":
        return [orjson.dumps(value) for value in orjson.loads(raw)]
    return raw.split(b"\n")


def test_every_line_of_the_shared_sft_data_agrees(shared_data: Path) -> None:
    for path in sorted((shared_data / "sft").iterdir()):
        lines = as_lines(path)
        kinds = assert_agrees(lines)
        # The common shapes are all taken: every line that converts, unless it holds a character
        # that `clean_text` removes (messages_en has a Persian ZWNJ) or a tool turn (glaive).
        takeable = [k for k, line in enumerate(lines) if line.strip() and needs_only_stripping(line)]
        assert np.flatnonzero(kinds == FAST).tolist() == takeable, path.name


TRICKY_STRINGS = [
    "你好，世界",
    "  padded \n",
    "tab\tand\nnewline",
    'quote " and backslash \\ and slash /',
    "emoji 😀 and 𠀀",
    "cr\r\nline",
    "nul\x00byte",
    "zero\u200bwidth",
    "bom\ufeff",
    "del\x7fc1\x85",
    "\u3000全角空格\u3000",
    "",
    "   ",
    "\u2028line separator",
]
# For the scanner's runs (see `sftscan._string`): ASCII read 8 bytes at a time, with a character
# that ends the run at each offset of a word; 3-byte forms, with one that ends the run or needs
# cleaning in the middle.
RUN_ENDERS = ['"', "\\", "\x7f", "\x01", "\n", "\t", "é", "你", "😀", "\u2028"]
TRICKY_STRINGS += ["abcdefghijklmnop"[:k] + x + "qrstuvwxyz0123" for k in range(10) for x in RUN_ENDERS]
TRICKY_STRINGS += [
    "你好世界" * 3 + x + "中文内容"
    for x in [
        *RUN_ENDERS,
        "\u200b",
        "\u200d",
        "\u2060",
        "\ufeff",
        "\u200e",
        "ไทย",
        "힣",
        "\u3000",
        "“引号”，",
    ]
]
RAW_STRING_FORMS = [
    b'"\\u4f60\\u597d"',  # escaped CJK
    b'"\\ud83d\\ude00"',  # surrogate pair
    b'"\\ud83d"',  # lone high surrogate: orjson refuses
    b'"\\ude00x"',  # lone low surrogate
    b'"\\u00e9\\/\\b\\f"',
    b'"\\/ escaped slash"',
    b'"\\u0041 escaped A"',
    b'"\\" quote \\\\ backslash \\n newline \\t tab"',
    b'"bad \\x escape"',
    b'"\xc3\xa9 ok"',
    b'"\xc3 truncated"',
    b'"\xe0\x80\x80 overlong"',
    b'"\xed\xa0\x80 surrogate"',
    b'"\xf4\x90\x80\x80 too big"',
    b'"\xff"',
    b'"raw \x01 control"',
    b'"unterminated',
    b'"\xe4\xbd\xa0\xe5\xa5\xbd\xe4\x41\xa0"',  # a bad continuation byte in a run of 3-byte forms
    b'"\xe4\xbd\xa0\xe5\xa5\xbd\xed\xa0\x80"',  # a surrogate after such a run
    b'"\xe4\xbd\xa0\xe5\xa5\xbd\xe0\x80\x80"',  # an overlong form after it
    b'"\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xbd',  # cut at the end of the line
    b'"abcdefghijklmnopqrstuvwxyz',  # an ASCII run to the end of the line
    b'"abcdefghij\x01klmnopqrst"',  # a raw control byte inside an 8-byte word
    b'"abcdefgh\x7fijklmnopqr"',  # a raw DEL (JSON allows it; it needs cleaning)
    b'"abcdefghijk\xffmnopqrs"',  # a byte that is never UTF-8, inside a word
]
OTHER_VALUES = [
    b"null",
    b"1",
    b"-0.5",
    b"01",
    b"1e5",
    b"1.",
    b"-",
    b"true",
    b"fals",
    b"[]",
    b"{}",
    b'[1, {"a": [null]}]',
    b"[1,]",
    b'{"a" 1}',
    b"[" * 70 + b"]" * 70,
]


def json_string(rng: random.Random) -> bytes:
    if rng.random() < 0.08:
        return rng.choice(RAW_STRING_FORMS)
    return orjson.dumps(rng.choice(TRICKY_STRINGS) + rng.choice(["", "有内容的回答", "text"]))


def value(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.8:
        return json_string(rng)
    if roll < 0.9:
        return rng.choice(OTHER_VALUES)
    return b"[" + b",".join(turn(rng) for _ in range(rng.randrange(0, 3))) + b"]"


def turn(rng: random.Random) -> bytes:
    keys = rng.choice(
        [
            ("role", "content"),
            ("from", "value"),
            ("role", "value"),
            ("role",),
            ("from", "value", "role", "content"),
        ]
    )
    roles = ["user", "assistant", "system", "human", "gpt", "tool", "bot", "User"]
    fields = []
    for key in keys:
        if key in ("role", "from"):
            fields.append(
                orjson.dumps(key)
                + b":"
                + (orjson.dumps(rng.choice(roles)) if rng.random() < 0.9 else value(rng))
            )
        else:
            fields.append(
                orjson.dumps(key) + b":" + (json_string(rng) if rng.random() < 0.85 else value(rng))
            )
    if rng.random() < 0.1:
        fields.append(b'"name": {"x": [1, 2.5, "y"]}')
    rng.shuffle(fields)
    return b"{" + b",".join(fields) + b"}"


def conversation(rng: random.Random) -> bytes:
    n = rng.randrange(1, 5)
    roles = (["system"] if rng.random() < 0.3 else []) + [("user", "assistant")[i % 2] for i in range(n)]
    if rng.random() < 0.15:
        rng.shuffle(roles)
    style = rng.random() < 0.5
    turns = []
    for role in roles:
        if style:
            turns.append(
                b'{"from": %s, "value": %s}'
                % (orjson.dumps({"user": "human", "assistant": "gpt"}.get(role, role)), json_string(rng))
            )
        else:
            turns.append(b'{"role": %s, "content": %s}' % (orjson.dumps(role), json_string(rng)))
    return b"[" + b", ".join(turns) + b"]"


KEYS = [
    "messages",
    "conversations",
    "conversation",
    "system",
    "system_prompt",
    "prompt",
    "question",
    "query",
    "instruction",
    "input",
    "response",
    "output",
    "answer",
    "completion",
    "history",
    "id",
    "meta",
]


def tricky_line(rng: random.Random) -> bytes:
    shape = rng.random()
    fields: list[tuple[str, bytes]] = []
    if shape < 0.3:
        fields.append((rng.choice(["messages", "conversations", "conversation"]), conversation(rng)))
    elif shape < 0.7:
        fields.append((rng.choice(["prompt", "question", "query", "instruction"]), json_string(rng)))
        fields.append((rng.choice(["response", "output", "answer", "completion"]), json_string(rng)))
    for _ in range(rng.randrange(0, 3)):
        key = rng.choice(KEYS) if rng.random() < 0.3 else rng.choice(["id", "meta", "tags"])
        fields.append(
            (
                key,
                conversation(rng)
                if key in ("messages", "conversations") and rng.random() < 0.5
                else value(rng),
            )
        )
    rng.shuffle(fields)
    body = b",".join(orjson.dumps(k) + rng.choice([b":", b" : ", b":\t"]) + v for k, v in fields)
    end = rng.choice([b"}", b"} ", b"}\r"]) if rng.random() < 0.9 else rng.choice([b"}x", b",}", b"}}", b""])
    line = rng.choice([b"{", b" {", b"{ "]) + body + end
    if rng.random() < 0.03:
        line = rng.choice(
            [b"[1, 2]", b'"text"', b"{}", b" \x0b ", b"\t", b"", b'{"prompt": "a"', b"\xef\xbb\xbf{}"]
        )
    return line


def test_generated_tricky_lines_agree_with_the_python_path() -> None:
    rng = random.Random(2026)
    lines = [tricky_line(rng) for _ in range(6000)]
    kinds = assert_agrees(lines)
    # Both paths are exercised: plenty of lines are taken, plenty are handed over.
    assert (kinds == FAST).sum() > 500
    assert (kinds == SLOW).sum() > 3000


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b'{"prompt": "\\u4f60\\u597d\xef\xbc\x9f", "response": " \\u7b54 "}', FAST),
        (b'{"instruction": "Q", "input": "  ", "output": "A", "system": ""}', FAST),
        (b'{"prompt": "Q", "response": "A", "prompt": "Q2"}', SLOW),  # duplicate key: orjson keeps the last
        (b'{"prompt": "Q", "response": "A", "extra": 1e400}', SLOW),  # orjson: number is infinity
        (b'{"prompt": "Q", "response": "A", "n": 12345678901234567890}', FAST),
        (b'{"prompt": "Q\\r\\nmore", "response": "A"}', SLOW),  # clean_text rewrites CR
        (b'{"prompt": null, "question": "Q", "response": "A"}', FAST),  # null aliases are skipped
        (b'{"prompt": "Q", "response": "A", "history": []}', SLOW),
        (
            b'{"messages": [{"role": "user", "content": "Q"}, '
            b'{"role": "assistant", "content": [{"type": "text", "text": "A"}]}]}',
            SLOW,
        ),
        (
            b'{"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}], '
            b'"system": "S"}',
            FAST,
        ),
        (
            b'{"conversations": [{"from": "system", "value": "S0"}, {"from": "human", "value": "Q"}, '
            b'{"from": "gpt", "value": "A"}], "system": "S"}',
            FAST,
        ),
        (b'{"messages": [{"role": "assistant", "content": "A"}]}', SLOW),  # bad turn order
    ],
)
def test_chosen_lines(line: bytes, kind: int) -> None:
    kinds = assert_agrees([line, b""])
    assert kinds[0] == kind


def raw_contents(line: bytes) -> list[bytes | None]:
    """Per message of a line the scanner takes: the raw bytes it gives for the content."""
    scanner = SftScanner.of(merged_aliases({}))
    _, kinds, *_, raw_bounds = scanner.scan(np.frombuffer(line, dtype=np.uint8), unicode_tables().space)
    assert kinds.tolist() == [FAST]
    return [line[a:b] if a >= 0 else None for a, b in raw_bounds.reshape(-1, 2).tolist()]


def test_contents_that_orjson_writes_as_they_are_keep_their_raw_bytes() -> None:
    # As written, with the escapes orjson writes too (\" \\ \n \t), in every shape.
    assert raw_contents('{"prompt": "你好", "response": "a \\"q\\" \\\\ \\n\\t b"}'.encode()) == [
        "你好".encode(),
        b'a \\"q\\" \\\\ \\n\\t b',
    ]
    line = b'{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, '
    line += b'{"role": "assistant", "content": "A"}]}'
    assert raw_contents(line) == [b"S", b"Q", b"A"]
    line = b'{"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}], '
    line += b'"system": "S"}'
    assert raw_contents(line) == [b"S", b"Q", b"A"]
    # Stripped, escaped otherwise than orjson does, or two strings joined: written anew.
    assert raw_contents(b'{"prompt": " Q ", "response": "A\\/B"}') == [None, None]
    assert raw_contents(b'{"prompt": "\\u4f60", "response": "A"}') == [None, b"A"]
    assert raw_contents(b'{"instruction": "I", "input": "X", "output": "A"}') == [None, b"A"]
    assert raw_contents(b'{"instruction": "I", "input": "", "output": "A"}') == [b"I", b"A"]
    line = b'{"messages": [{"role": "user", "content": "Q\\t"}, {"role": "assistant", "content": "A"}]}'
    assert raw_contents(line) == [None, b"A"]


def test_config_aliases_are_matched_including_a_name_shared_by_two_fields() -> None:
    aliases = merged_aliases({"prompt": ["text"], "response": ["text", "reply"]})
    lines = [
        b'{"text": "\xe9\x97\xae\xe9\xa2\x98", "reply": "\xe5\x9b\x9e\xe7\xad\x94"}',
        b'{"text": "same text for both fields"}',
    ]
    kinds = assert_agrees(lines, aliases)
    assert kinds.tolist() == [FAST, FAST]


def test_the_stage_writes_the_same_bytes_with_and_without_the_scanner(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(5)
    folder = tmp_path / "raw" / "mixed"
    folder.mkdir(parents=True)
    lines = [tricky_line(rng) for _ in range(1500)]
    for path in sorted((shared_data / "sft").iterdir()):
        lines += as_lines(path)
    rng.shuffle(lines)
    (folder / "part.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    def run(out: str) -> dict[str, bytes]:
        cfg = DataConfig(
            raw_dir=str(tmp_path / "raw"),
            out_dir=str(tmp_path / out),
            sft_sources=[{"name": "mixed"}],
            pref_sources=[],
            workers=1,
        )
        report = prepare_data(cfg)
        assert report["sft"]["accounted"]
        return {
            p.name: p.read_bytes()
            for p in (tmp_path / out).iterdir()
            if p.suffix in (".jsonl", ".json") and p.name != "manifest.json"
        }

    scanned = run("scanned")
    monkeypatch.setattr(sftscan.SftScanner, "of", classmethod(lambda cls, aliases: None))
    python = run("python")
    assert scanned == python
    assert len(scanned["sft_train.jsonl"].splitlines()) > 1000
