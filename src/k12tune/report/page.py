"""report.html: one self-contained file. The style sheet is inline, every figure is a
`data:image/png;base64` URI, and nothing is fetched: no script, font, style sheet or image from
elsewhere, so the file can be mailed or archived as it is. All text is HTML-escaped; text from
the data (`Verbatim`) is shown in <code> as typed."""

from __future__ import annotations

import base64
import html
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

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", sans-serif; margin: 2em auto;
       max-width: 72em; padding: 0 1em; color: #1b1f23; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #d0d7de; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em;
       background: #f6f8fa; padding: 0 .2em; word-break: break-all; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
pre code { padding: 0; word-break: normal; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: .9em; color: #57606a; }
.problem { background: #fff8c5; border-left: 4px solid #d4a72c; padding: .4em .8em; }
"""


def prose(text: str) -> str:
    """k12tune's own text: escaped, with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def cell(value: Cell) -> str:
    return f"<code>{html.escape(value.text)}</code>" if isinstance(value, Verbatim) else prose(value)


def table(block: Table) -> str:
    head = "".join(f"<th>{cell(h)}</th>" for h in block.head)
    rows = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>\n" for row in block.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>"


def block_html(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h3>{prose(block.text)}</h3>"
    if isinstance(block, Text):
        return f"<p>{prose(block.text)}</p>"
    if isinstance(block, Table):
        return table(block)
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        caption = prose(block.caption)
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    if isinstance(block, Commands):
        return "<pre><code>" + html.escape("\n".join(block.lines)) + "</code></pre>"
    raise TypeError(f"no HTML for {type(block).__name__}")


def to_html(title: str, sections: list[Section]) -> str:
    gaps = missing(sections)
    status = (
        "<p>Not run or unfinished:</p>\n<ul>" + "".join(f"<li>{prose(g)}</li>" for g in gaps) + "</ul>"
        if gaps
        else "<p>Every stage's output was found finished.</p>"
    )
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = []
    for section in sections:
        body.append(f'<section id="{section.anchor}">\n<h2>{html.escape(section.title)}</h2>')
        body += [f'<p class="problem">{prose(problem)}</p>' for problem in section.problems]
        body += [block_html(block) for block in section.blocks]
        body.append("</section>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>{html.escape(title)}</h1>",
            f"<nav>{nav}</nav>",
            status,
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
