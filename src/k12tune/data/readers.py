"""Raw files -> `RawItem`s (parsed value + provenance), streamed, local files first, hub second.

Formats, chosen by file name:
  *.jsonl            one JSON value per line; blank lines are skipped (and counted)
  *.json             a JSON array (first non-blank character `[`), parsed element by element
                     from a bounded buffer; any other .json file is read as JSON lines
  *.parquet          row groups streamed with pyarrow
A bad line in a JSONL file becomes a rejected item (`malformed_json`, `invalid_utf8`); a broken
JSON array cannot be resynchronised, so it stops the run with a `DataError` naming file and line.
`iter_work` hands a JSONL file out as byte ranges of whole lines instead (`JsonlChunk`), so that
the pipeline's worker processes read and parse the lines, not the process that hands them out.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from tqdm import tqdm

from k12tune.digest import bytes_digest, file_digest, hasher
from k12tune.errors import DataError
from k12tune.records import Origin

if TYPE_CHECKING:
    from k12tune.data.specs import SourceSpec

log = logging.getLogger(__name__)

DATA_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".parquet")
_CHUNK = 1 << 22
_BOM = b"\xef\xbb\xbf"
_WS = re.compile(r"[ \t\r\n]*")
_LONE_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \uD800..\uDFFF escapes: valid only in pairs


@dataclass(slots=True)
class RawItem:
    """One raw record. `error` is (rule, detail) when it could not be parsed; `value` then
    holds the raw text (undecodable bytes shown as U+FFFD) for the rejects file. `plain`:
    known to hold no string that `clean_text` would change beyond stripping it (see
    `kernels.plain_lines`)."""

    value: Any
    origin: Origin
    error: tuple[str, str] | None = None
    plain: bool = False


@dataclass
class ReadStats:
    """What was read from where: files with their digests (`digest`), blank lines skipped, empty files."""

    files: dict[str, str] = field(default_factory=dict)
    blank_lines: int = 0
    empty_files: list[str] = field(default_factory=list)


def local_dir(spec: SourceSpec, raw_dir: str | Path) -> Path:
    return Path(spec.local_dir) if spec.local_dir else Path(raw_dir) / spec.name


def find_data_files(folder: Path) -> list[Path]:
    """Data files under `folder` (recursive, sorted). A folder without any is an error: it
    would otherwise send the run to the hub, or silently produce nothing."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
    if not files:
        others = sorted(p.name for p in folder.rglob("*") if p.is_file())[:5]
        found = f" (found: {', '.join(others)})" if others else " (it is empty)"
        raise DataError(
            f"{folder} holds no {'/'.join(DATA_SUFFIXES)} files{found}; "
            "add data files or remove the folder to load this source from the hub"
        )
    return files


def _progress(path: Path) -> tqdm:
    return tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name, disable=None, leave=False
    )


class JudgedProgress:
    """A progress bar per JSONL file, in bytes, advanced as its chunks are judged."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm] = {}

    def advance(self, chunk: JsonlChunk) -> None:
        bar = self._bars.get(chunk.path)
        if bar is None:
            bar = self._bars[chunk.path] = _progress(Path(chunk.path))
        bar.update(chunk.end - bar.n)
        if chunk.end >= bar.total:
            bar.close()
            del self._bars[chunk.path]

    def __enter__(self) -> JudgedProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars = {}


def parse_line(line: bytes, origin: Origin) -> RawItem:
    """A JSONL line -> parsed item, or a rejected one naming why it is not JSON."""
    try:
        return RawItem(orjson.loads(line), origin)
    except orjson.JSONDecodeError as exc:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            detail = f"byte 0x{line[bad.start]:02x} at column {bad.start + 1}"
            return RawItem(line.decode("utf-8", "replace"), origin, ("invalid_utf8", detail))
        return RawItem(line.decode("utf-8"), origin, ("malformed_json", str(exc)))


@dataclass(frozen=True, slots=True)
class JsonlChunk:
    """Whole lines of a JSONL file: bytes [start, end), the first of them line `first_line`.
    Only the last chunk of a file may end without a newline."""

    path: str
    start: int
    end: int
    first_line: int


def jsonl_chunks(path: Path, stats: ReadStats) -> Iterator[JsonlChunk]:
    """The file cut into chunks of whole lines, about `_CHUNK` bytes each. The bytes are read
    here only to hash the file and find line ends; the lines are read and parsed by whoever
    judges the chunk (`read_chunk`), in parallel. The progress bar follows the judging
    (`JudgedProgress`): this may run far ahead of it."""
    file_hasher = hasher()
    name = str(path)
    start = offset = 0
    line = 1
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            file_hasher.update(block)
            if offset == 0 and block.startswith(_BOM):
                start = len(_BOM)
            offset += len(block)
            last_newline = block.rfind(b"\n")
            if last_newline < 0:
                continue  # a line longer than a block: the chunk grows
            end = offset - len(block) + last_newline + 1
            yield JsonlChunk(name, start, end, line)
            # The bytes carried over from earlier blocks hold no newline. (numpy counts a block
            # five times faster than bytes.count, which matters in the one process that reads.)
            line += int(np.count_nonzero(np.frombuffer(block, dtype=np.uint8) == 0x0A))
            start = end
        if start < offset:
            yield JsonlChunk(name, start, offset, line)
    stats.files[name] = file_hasher.hexdigest()


def chunk_bytes(chunk: JsonlChunk) -> bytes:
    with open(chunk.path, "rb") as handle:
        handle.seek(chunk.start)
        return handle.read(chunk.end - chunk.start)


def read_chunk(chunk: JsonlChunk, source: str) -> tuple[list[RawItem], int]:
    """The chunk's non-blank lines parsed, with their numbers, and how many lines were blank
    (white space only; a blank last line without a newline is not counted)."""
    from k12tune.data import kernels

    data = chunk_bytes(chunk)
    lines = data.split(b"\n")
    plain = kernels.plain_lines(np.frombuffer(data, dtype=np.uint8), len(lines)).tolist()
    items = []
    blank = 0
    last = len(lines) - 1  # empty, or the file's last line when it has no newline
    for k, line in enumerate(lines):
        if line.strip():
            item = parse_line(line, Origin(source, chunk.path, chunk.first_line + k))
            item.plain = plain[k]
            items.append(item)
        elif k < last:
            blank += 1
    return items, blank


def iter_jsonl(path: Path, source: str, stats: ReadStats) -> Iterator[RawItem]:
    """Lines with their numbers, parsed; blank lines are skipped and counted."""
    for chunk in jsonl_chunks(path, stats):
        items, blank = read_chunk(chunk, source)
        stats.blank_lines += blank
        yield from items


class _ArrayReader:
    """Streams the elements of a top-level JSON array with the line each element starts on.

    The text is decoded with `surrogateescape`, so a non-UTF-8 byte inside one element turns
    into a rejection of that element (`invalid_utf8`) instead of stopping the file.
    """

    def __init__(self, path: Path, source: str, stats: ReadStats) -> None:
        self.path, self.source, self.stats = path, source, stats
        self.decoder = json.JSONDecoder()

    def __iter__(self) -> Iterator[RawItem]:
        file_hasher = hasher()
        name = str(self.path)
        buf, pos, line, eof = "", 0, 1, False
        utf8 = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        with open(self.path, "rb") as handle, _progress(self.path) as bar:

            def more() -> bool:
                nonlocal buf, pos
                chunk = handle.read(_CHUNK)
                file_hasher.update(chunk)
                bar.update(len(chunk))
                buf = buf[pos:] + utf8.decode(chunk, final=not chunk)
                pos = 0
                return bool(chunk)

            def skip_ws() -> None:
                nonlocal pos, line, eof
                while True:
                    end = _WS.match(buf, pos).end()
                    line += buf.count("\n", pos, end)
                    pos = end
                    if pos < len(buf) or eof:
                        return
                    eof = not more()

            eof = not more()
            if buf.startswith("\ufeff"):
                pos = 1
            skip_ws()
            if not buf[pos : pos + 1] == "[":
                raise DataError(f"{name}:{line}: expected a JSON array starting with '['")
            pos += 1
            count = 0
            while True:
                skip_ws()
                if pos >= len(buf):
                    raise DataError(f"{name}:{line}: JSON array is not closed with ']'")
                if buf[pos] == "]":
                    break
                if count:
                    if buf[pos] != ",":
                        raise DataError(f"{name}:{line}: expected ',' or ']' between array elements")
                    pos += 1
                    skip_ws()
                value, end = self._decode(buf, pos, eof, name, line)
                while value is _NEED_MORE:
                    eof = not more()
                    value, end = self._decode(buf, pos, eof, name, line)
                origin = Origin(self.source, name, line)
                count += 1
                if _LONE_SURROGATE.search(buf, pos, end):
                    raw = buf[pos:end].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    yield RawItem(raw, origin, ("invalid_utf8", "element holds bytes that are not UTF-8"))
                elif _SURROGATE_ESCAPE.search(buf, pos, end):
                    # json accepts a lone \uD800 escape, orjson (our writer) does not: let it judge.
                    yield parse_line(buf[pos:end].encode("utf-8"), origin)
                else:
                    yield RawItem(value, origin)
                line += buf.count("\n", pos, end)
                pos = end
            pos += 1
            skip_ws()
            if pos < len(buf):
                raise DataError(f"{name}:{line}: unexpected data after the closing ']'")
        self.stats.files[name] = file_hasher.hexdigest()

    def _decode(self, buf: str, pos: int, eof: bool, name: str, line: int) -> tuple[Any, int]:
        try:
            value, end = self.decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            if not eof:
                return _NEED_MORE, pos
            bad_line = line + buf.count("\n", pos, exc.pos)
            raise DataError(f"{name}:{bad_line}: invalid JSON in array element: {exc.msg}") from None
        if end == len(buf) and not eof:  # a bare number or literal may continue in the next chunk
            return _NEED_MORE, pos
        return value, end


_NEED_MORE = object()


def _starts_with_bracket(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(_BOM).lstrip()
    return head.startswith(b"[")


def iter_parquet(path: Path, source: str, stats: ReadStats) -> Iterator[RawItem]:
    import pyarrow.parquet as pq

    name = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{name}: not a readable Parquet file ({exc})") from None
    row = 0
    with tqdm(total=parquet.metadata.num_rows, unit="rec", desc=path.name, disable=None, leave=False) as bar:
        for batch in parquet.iter_batches(batch_size=4096):
            for value in batch.to_pylist():
                row += 1
                yield RawItem(value, Origin(source, name, row))
            bar.update(batch.num_rows)
    stats.files[name] = file_digest(path)


def _is_empty(path: Path, stats: ReadStats) -> bool:
    if path.stat().st_size:
        return False
    log.warning("%s: empty file, no records", path)
    stats.empty_files.append(str(path))
    stats.files[str(path)] = bytes_digest(b"")
    return True


def _is_jsonl(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix == ".jsonl" or (suffix == ".json" and not _starts_with_bracket(path))


def iter_file(path: Path, source: str, stats: ReadStats) -> Iterator[RawItem]:
    if _is_empty(path, stats):
        return iter(())
    if path.suffix.lower() == ".parquet":
        return iter_parquet(path, source, stats)
    if _is_jsonl(path):
        return iter_jsonl(path, source, stats)
    return iter(_ArrayReader(path, source, stats))


def iter_hub(spec: SourceSpec) -> Iterator[RawItem]:
    """Stream a hub dataset (or a local dataset folder given as `hub_id`) with `datasets`."""
    from datasets import load_dataset

    if spec.hub_id is None:
        raise DataError(f"source {spec.name}: no local files and no hub_id to load from")
    for subset in spec.subsets or [None]:
        where = f"hub:{spec.hub_id}/{subset or 'default'}/{spec.split}"
        try:
            dataset = load_dataset(spec.hub_id, name=subset, split=spec.split, streaming=True)
        except Exception as exc:  # network, missing subset, auth: all end the same way for the user
            raise DataError(
                f"source {spec.name}: cannot load {where} ({type(exc).__name__}: {exc}); on a machine "
                f"without hub access put its files under data_raw/{spec.name}/"
            ) from None
        for row, value in enumerate(
            tqdm(dataset, desc=where, unit="rec", disable=None, leave=False), start=1
        ):
            yield RawItem(value, Origin(spec.name, where, row))


def iter_source(spec: SourceSpec, raw_dir: str | Path, stats: ReadStats) -> Iterator[RawItem]:
    """Local files when `<raw_dir>/<name>/` (or `local_dir`) exists, the hub otherwise."""
    folder = local_dir(spec, raw_dir)
    if folder.exists():
        for path in find_data_files(folder):
            yield from iter_file(path, spec.name, stats)
    else:
        yield from iter_hub(spec)


def batched(items: Iterable[RawItem], size: int) -> Iterator[list[RawItem]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def iter_work(
    spec: SourceSpec, raw_dir: str | Path, stats: ReadStats, batch_size: int
) -> Iterator[JsonlChunk | list[RawItem]]:
    """`iter_source` as units of parallel work, in stream order: a JSONL file as chunks of
    lines (read and parsed where they are judged), anything else as lists of `batch_size`
    parsed items."""
    folder = local_dir(spec, raw_dir)
    if not folder.exists():
        yield from batched(iter_hub(spec), batch_size)
        return
    for path in find_data_files(folder):
        if path.suffix.lower() != ".parquet" and path.stat().st_size and _is_jsonl(path):
            yield from jsonl_chunks(path, stats)
        else:
            yield from batched(iter_file(path, spec.name, stats), batch_size)
