"""report.md: the report in GitHub-flavoured Markdown, figures as PNG files in `report_assets/`.

Text from the data goes into code spans (fenced with more backticks than it holds), where
Markdown renders nothing: a rejected record holding `<script>` or `[a](http://...)` shows as
typed. Pipes are escaped in table cells, which GFM does before it reads code spans.
"""

from __future__ import annotations

import re

from k12tune.report.document import (
    Block,
    Cell,
    Commands,
    Figure,
    Heading,
    Section,
    Table,
    Text,
    Verbatim,
    missing,
)

ASSETS = "report_assets"


def code_span(text: str) -> str:
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    # CommonMark strips one space from each end of a code span, so padding keeps a text that
    # starts or ends with a backtick or a space intact.
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def cell(value: Cell) -> str:
    text = code_span(value.text) if isinstance(value, Verbatim) else value
    return " ".join(text.split("\n")).replace("|", "\\|")


def table(block: Table) -> str:
    lines = ["| " + " | ".join(cell(h) for h in block.head) + " |", "|" + "---|" * len(block.head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in block.rows]
    return "\n".join(lines)


def block_markdown(block: Block) -> str:
    if isinstance(block, Heading):
        return f"### {block.text}"
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Table):
        return table(block)
    if isinstance(block, Figure):
        return f"![{block.alt}]({ASSETS}/{block.name})\n\n{block.caption}"
    if isinstance(block, Commands):
        return "```bash\n" + "\n".join(block.lines) + "\n```"
    raise TypeError(f"no Markdown for {type(block).__name__}")


def to_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}"]
    gaps = missing(sections)
    parts.append(
        "Not run or unfinished:\n\n" + "\n".join(f"- {line}" for line in gaps)
        if gaps
        else "Every stage's output was found finished."
    )
    for section in sections:
        parts.append(f"## {section.title}")
        parts += [f"> {problem}" for problem in section.problems]
        parts += [block_markdown(block) for block in section.blocks]
    return "\n\n".join(parts) + "\n"
