"""report's dry run: which stage outputs were found and whether each is finished, and what
would be written. It reads manifests only (no file is re-hashed and no figure drawn), so a
file changed after its stage wrote it shows up in the real run, not here."""

from __future__ import annotations

from pathlib import Path

from k12tune.config.report import ReportConfig
from k12tune.report.build import HTML, MARKDOWN
from k12tune.report.inputs import StageOutput, find_inputs
from k12tune.report.markdown import ASSETS


def status(found: StageOutput) -> str:
    return f"finished {found.stage}" if found.manifest is not None else str(found.problem)


def report_plan(cfg: ReportConfig) -> str:
    found = find_inputs(cfg, check_hashes=False)
    rows = [("data", found.data), *((f"run {r.name}", r) for r in found.runs), ("eval", found.eval)]
    rows += [(f"export {e.name}", e) for e in found.exports]
    width = max(len(label) for label, _ in rows)
    lines = ["inputs (manifests checked; files are re-hashed only in the real run):"]
    lines += [f"  {label:<{width}}  {f.folder}: {status(f)}" for label, f in rows]
    if not found.exports:
        lines.append(f"  no export folder under {found.export_root}")
    out = Path(cfg.out_dir)
    lines.append("would write:")
    lines += [f"  {out / HTML}", f"  {out / MARKDOWN}", f"  {out / ASSETS}/*.png"]
    return "\n".join(lines)
