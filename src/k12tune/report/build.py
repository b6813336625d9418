"""report: one report of the whole pipeline, `report.html` (self-contained) and `report.md`
(with its PNGs in `report_assets/`), from the stages' finished outputs.

A stage whose output is missing or unfinished gets a section that says so and how to run it;
the report is written anyway. Nothing half-written is left behind: the old report is removed
first, the new one is rendered into a staging folder, and report.html, the file people open,
is moved into place last. The same inputs give the same report.md (no timestamps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k12tune.atomic import publish, staging_dir
from k12tune.config.report import ReportConfig
from k12tune.report.commands import gpu_section
from k12tune.report.data import data_section
from k12tune.report.document import Section, figures, missing
from k12tune.report.inputs import find_inputs
from k12tune.report.markdown import ASSETS, to_markdown
from k12tune.report.page import to_html
from k12tune.report.sections import eval_section, export_section, training_section

HTML = "report.html"
MARKDOWN = "report.md"


def build_sections(cfg: ReportConfig) -> list[Section]:
    found = find_inputs(cfg, check_hashes=cfg.check_hashes)
    return [
        data_section(found.data, cfg.example_chars),
        training_section(found.runs),
        eval_section(found.eval),
        export_section(found.export_root, found.exports),
        gpu_section(),
    ]


def write_report(cfg: ReportConfig) -> dict[str, Any]:
    out = Path(cfg.out_dir)
    for name in (HTML, MARKDOWN):
        (out / name).unlink(missing_ok=True)
    sections = build_sections(cfg)
    pictures = figures(sections)
    names = [figure.name for figure in pictures]
    with staging_dir(out) as staging:
        (staging / ASSETS).mkdir()
        for figure in pictures:
            (staging / ASSETS / figure.name).write_bytes(figure.png)
        (staging / MARKDOWN).write_text(to_markdown(cfg.title, sections), encoding="utf-8")
        (staging / HTML).write_text(to_html(cfg.title, sections), encoding="utf-8")
        (out / ASSETS).mkdir(exist_ok=True)
        publish(staging / ASSETS, out / ASSETS, names)
        publish(staging, out, [MARKDOWN, HTML])
    for stale in sorted((out / ASSETS).glob("*.png")):
        if stale.name not in names:
            stale.unlink()
    return {
        "html": str(out / HTML),
        "markdown": str(out / MARKDOWN),
        "assets": [str(out / ASSETS / name) for name in names],
        "missing": missing(sections),
    }


def summarise(cfg: ReportConfig, result: dict[str, Any], seconds: float) -> str:
    lines = [
        f"report finished in {seconds:.1f} s",
        "wrote:",
        f"  {result['html']}",
        f"  {result['markdown']}",
    ]
    lines += [f"  {path}" for path in result["assets"]]
    if result["missing"]:
        lines.append("not run or unfinished (reported as such):")
        lines += [f"  {line}" for line in result["missing"]]
    else:
        lines.append("every stage's output was found finished")
    return "\n".join(lines)
