"""The report as data: sections of blocks, built once and rendered twice (`markdown.py`,
`page.py`), so report.md and report.html always say the same thing.

Two kinds of text: `str` is k12tune's own prose, where `code` spans are allowed; `Verbatim` is
text taken from the data (a rejected record's detail, an input file's name), which may hold
anything and is always shown literally, never interpreted as Markdown or HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Verbatim:
    text: str


Cell = str | Verbatim


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Table:
    head: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


@dataclass(frozen=True)
class Figure:
    """A PNG: embedded in report.html, a file `report_assets/<name>` beside report.md."""

    name: str
    caption: str
    png: bytes

    @property
    def alt(self) -> str:
        """The caption as plain text, for an image's alternative text."""
        return self.caption.replace("`", "")


@dataclass(frozen=True)
class Commands:
    lines: tuple[str, ...]


Block = Heading | Text | Table | Figure | Commands


@dataclass
class Section:
    """One part of the report; `problems` name the inputs it could not use (not run, unfinished)."""

    anchor: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def figures(sections: list[Section]) -> list[Figure]:
    return [block for section in sections for block in section.blocks if isinstance(block, Figure)]


def missing(sections: list[Section]) -> list[str]:
    """One line per input a section could not use: what the report's reader should run next."""
    return [f"{section.title}: {problem}" for section in sections for problem in section.problems]


def number(value: float | None) -> str:
    """A count with thousands separators, a measured value to 4 significant digits, or a dash
    when there is none."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"
