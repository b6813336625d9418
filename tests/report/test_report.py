"""The report stage on real stage outputs: its numbers are the inputs' numbers, report.html is
self-contained and escapes what the data holds, report.md's pictures exist, missing and
unfinished stages are reported while the report is still written, the GPU commands follow the
stage registry, the dry run writes nothing, and a failure leaves no report behind."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from k12tune.cli import STAGES, run_stage
from k12tune.config.report import ReportConfig
from k12tune.errors import ConfigError
from k12tune.export.plan import human
from k12tune.manifest import MANIFEST, verify_manifest
from k12tune.report import build
from k12tune.report.build import write_report
from k12tune.report.commands import MULTI_GPU_CONFIG, SETUP, gpu_commands
from k12tune.train.runlog import read_log

from .conftest import EVAL_SCORES, HOSTILE_ROLE, report_config

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Every tag with its attributes, the text of <pre> blocks, and every table as rows of
    cell texts (entities decoded)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: list[list[list[str]]] = []
        self.pre: list[str] = []
        self.style = ""
        self._cell: list[str] | None = None
        self._row: list[str] = []
        self._in: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("pre", "style"):
            self._in = tag
            if tag == "pre":
                self.pre.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr":
            self.tables[-1].append(self._row)
        elif tag in ("pre", "style"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in == "pre":
            self.pre[-1] += data
        elif self._in == "style":
            self.style += data

    def tables_headed(self, *head: str) -> list[list[dict[str, str]]]:
        """Each table whose header starts with `head`, as rows of {column: cell text}."""
        return [
            [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
            for rows in self.tables
            if tuple(rows[0][: len(head)]) == head
        ]

    def table(self, *head: str) -> list[dict[str, str]]:
        return self.tables_headed(*head)[0]


@pytest.fixture(scope="module")
def report(stage_outputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cfg = report_config(stage_outputs, tmp_path_factory.mktemp("report"))
    result = write_report(cfg)
    html = Path(result["html"]).read_text(encoding="utf-8")
    return {
        "cfg": cfg,
        "result": result,
        "html": html,
        "page": Page(html),
        "md": Path(result["markdown"]).read_text(encoding="utf-8"),
    }


def first_rejections(path: Path) -> tuple[Counter, dict[tuple[str, str], dict]]:
    """Counts per (stage, rule) and the first row of each, from the whole rejects file."""
    counts: Counter = Counter()
    first: dict[tuple[str, str], dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        key = (row["stage"], row["rule"])
        counts[key] += 1
        first.setdefault(key, row)
    return counts, first


def test_data_numbers_are_the_inputs(report: dict[str, Any], stage_outputs: dict[str, Path]) -> None:
    data = stage_outputs["data"]
    stats = json.loads((data / "report.json").read_text(encoding="utf-8"))
    counts, first = first_rejections(data / "rejected.jsonl")
    page, md = report["page"], report["md"]
    accounting = {row["stage"]: row for row in page.table("stage", "read", "kept", "rejected")}
    rule_tables = page.tables_headed("rule", "rejected")
    for (stage, label), rules in zip((("sft", "SFT"), ("pref", "preference")), rule_tables, strict=True):
        s = stats[stage]
        assert s["read"] == s["kept"] + s["rejected"] and s["rejected"] > 0
        row = accounting[label]
        assert [row["read"], row["kept"], row["rejected"]] == [
            f"{s[k]:,}" for k in ("read", "kept", "rejected")
        ]
        assert row["read = kept + rejected"] == "yes"
        assert f"| {label} | {s['read']:,} | {s['kept']:,} | {s['rejected']:,} | yes |" in md
        shown = {row["rule"]: row for row in rules}
        assert set(shown) == set(s["rules"]) == {rule for st, rule in counts if st == stage}
        for rule, row in shown.items():
            example, detail = first[(stage, rule)], first[(stage, rule)]["detail"]
            assert row["rejected"] == f"{s['rules'][rule]:,}" == f"{counts[(stage, rule)]:,}"
            assert row["first example (file:line)"] == f"{example['file']}:{example['line']}"
            assert row["its detail"] == (detail if len(detail) <= 160 else detail[:159] + "…")
    # The real sample data's own rejections are among them: tool calls, English pairs, duplicates.
    assert {("sft", "unsupported_role"), ("sft", "duplicate"), ("pref", "zh_share")} <= set(counts)
    per_source = {(row["stage"], row["source"]): row for row in page.table("stage", "source", "read from")}
    for stage, label in (("sft", "SFT"), ("pref", "preference")):
        for name, src in stats[stage]["sources"].items():
            row = per_source[(label, name)]
            assert [row["read"], row["kept"], row["rejected"]] == [
                f"{src[k]:,}" for k in ("read", "kept", "rejected")
            ]


def test_hostile_detail_is_shown_as_typed_and_never_markup(report: dict[str, Any]) -> None:
    page, html, md = report["page"], report["html"], report["md"]
    detail = f"conversations[1].from = '{HOSTILE_ROLE}'"
    sft_rules = page.table("rule", "rejected")
    assert [row["its detail"] for row in sft_rules if row["rule"] == "unsupported_role"] == [detail]
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    # Markdown: in a code span fenced longer than the backtick it holds, the pipe escaped.
    assert "``" + detail.replace("|", "\\|") + "``" in md


def test_training_curves_and_final_values(report: dict[str, Any], stage_outputs: dict[str, Path]) -> None:
    rows = {row["run"]: row for row in report["page"].table("run", "stage", "folder", "steps")}
    for run, stage in (("sft", "train_sft"), ("align", "train_dpo")):
        folder = stage_outputs[run]
        log = read_log(folder / "train_log.jsonl")
        row = rows[run]
        assert (row["stage"], row["folder"]) == (stage, str(folder))
        assert row["steps"] == str(verify_manifest(folder, stage)["counts"]["global_step"])
        assert row["loss (train)"] == f"{[r['loss'] for r in log if 'loss' in r][-1]:.4g}"
    align_log = read_log(stage_outputs["align"] / "train_log.jsonl")
    margin = [r["rewards/margins"] for r in align_log if "rewards/margins" in r][-1]
    assert rows["align"]["margin (train)"] == f"{margin:.4g}"
    assert rows["sft"]["margin (train)"] == "—"
    assert "report_assets/curves_sft.png" in report["md"] and "report_assets/curves_align.png" in report["md"]


def test_eval_table_and_exported_paths(report: dict[str, Any], stage_outputs: dict[str, Path]) -> None:
    page = report["page"]
    base, sft, align = (100 * EVAL_SCORES[r] for r in ("base", "sft", "align"))
    scores = page.table("task", "metric", "base", "sft", "align")
    assert [row["task"] for row in scores] == ["cmmlu", "k12_slice"]
    for row in scores:
        assert list(row.values())[1:] == [
            "acc",
            f"{base:.2f}",
            f"{sft:.2f}",
            f"{align:.2f}",
            f"{sft - base:+.2f}",
            f"{align - base:+.2f}",
        ]
    assert "limit=8: a smoke test; not comparable with published scores." in report["md"]
    folder = stage_outputs["export_root"] / "k12-dpo"
    listed = {row["file"]: row["size"] for row in page.table("file", "size")}
    on_disk = sorted(p.name for p in folder.iterdir())
    assert MANIFEST in on_disk and len(listed) == len(on_disk)
    for name in on_disk:
        assert listed[str(folder / name)] == human((folder / name).stat().st_size)
    facts = {row["what"]: row["value"] for row in page.table("what", "value")}
    assert facts["mode"] == "adapter" and facts["rank"] == "32"
    assert facts["check"].startswith(
        "passed: max |export - trained| logit 9.5e-06 against a tolerance of 0.001"
    )


def test_html_is_one_self_contained_file(report: dict[str, Any]) -> None:
    page, html = report["page"], report["html"]
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "link", "iframe", "object", "embed", "base", "audio", "video", "source"}
    assert "url(" not in page.style and "@import" not in page.style
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 5  # languages, lengths, two training runs, scores
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)[:8] == PNG
    for _, attrs in page.tags:
        for name in ("src", "href", "srcset", "poster", "action"):
            if name in attrs:
                value = attrs[name] or ""
                assert value.startswith("data:image/png;base64," if name == "src" else "#"), (name, value)
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html


def test_markdown_pictures_are_png_files_beside_it(report: dict[str, Any]) -> None:
    out = Path(report["cfg"].out_dir)
    referenced = re.findall(r"!\[[^\]]*\]\((report_assets/[^)]+\.png)\)", report["md"])
    assert len(referenced) == 5 and sorted(referenced) == sorted(
        f"report_assets/{p.name}" for p in (out / "report_assets").iterdir()
    )
    embedded = [attrs["src"].split(",", 1)[1] for tag, attrs in report["page"].tags if tag == "img"]
    for rel, data in zip(referenced, embedded, strict=True):
        assert (out / rel).read_bytes() == base64.b64decode(data)
    assert sorted(report["result"]["assets"]) == sorted(str(out / rel) for rel in referenced)


def test_gpu_commands_follow_the_stage_registry(report: dict[str, Any]) -> None:
    lines = gpu_commands()
    assert lines[0] == SETUP == "bash scripts/setup_env.sh --dry-run false"
    for name, stage in STAGES.items():
        command = f"-m scripts.{name} --config {stage.default_config} --dry-run false"
        matching = [line for line in lines if line.lstrip("# ").endswith(command)]
        assert len(matching) == 1, name
        launcher = "accelerate launch" if name.startswith("train_") else "python"
        assert matching[0].lstrip("# ").startswith(f"{launcher} -m "), matching[0]
        assert (ROOT / "scripts" / f"{name}.py").is_file() and (ROOT / stage.default_config).is_file()
    assert (ROOT / MULTI_GPU_CONFIG).is_file()
    # The report shows exactly these lines, and the multi-GPU one.
    assert report["page"].pre[0] == "\n".join(lines)
    assert "```bash\n" + "\n".join(lines) + "\n```" in report["md"]
    assert (
        report["page"]
        .pre[1]
        .startswith(f"accelerate launch --config_file {MULTI_GPU_CONFIG} -m scripts.train_sft")
    )


def test_same_inputs_same_report_and_stale_pictures_go(report: dict[str, Any]) -> None:
    out = Path(report["cfg"].out_dir)
    before = {p.name: p.read_bytes() for p in (out / "report_assets").iterdir()}
    (out / "report_assets" / "curves_gone.png").write_bytes(PNG)
    write_report(report["cfg"])
    assert (out / "report.md").read_text(encoding="utf-8") == report["md"]
    assert {p.name: p.read_bytes() for p in (out / "report_assets").iterdir()} == before
    assert not list(out.glob(".staging-*"))


def write_yaml(path: Path, cfg: ReportConfig) -> Path:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    return path


def test_missing_stages_are_reported_and_the_report_written(
    stage_outputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = tmp_path / "absent"
    cfg = report_config(
        stage_outputs,
        tmp_path / "out",
        sft_dir=str(gone / "sft"),
        align_dirs={"dpo": str(gone / "align")},
        eval_dir=str(gone / "eval"),
        export_root=str(gone / "adapters"),
    )
    code = run_stage(
        "report", ["--config", str(write_yaml(tmp_path / "report.yaml", cfg)), "--dry-run", "false"]
    )
    printed = capsys.readouterr().out
    assert code == 0
    expected = [
        f"Training: sft: not run: {gone / 'sft'} does not exist; run `k12tune train_sft --dry-run false`",
        f"Training: dpo: not run: {gone / 'align'} does not exist; run `k12tune train_dpo --dry-run false` "
        "or `k12tune train_orpo --dry-run false`",
        f"Evaluation: not run: {gone / 'eval'} does not exist; run `k12tune eval_harness --dry-run false`",
        f"Exports: not run: no export under {gone / 'adapters'}; run `k12tune export_lora --dry-run false`",
    ]
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    page = Page((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    for line in expected:
        assert f"  {line}\n" in printed and f"- {line}\n" in md
    problems = [attrs for tag, attrs in page.tags if attrs.get("class") == "problem"]
    assert len(problems) == 4
    # The data section is still there in full, with its two figures.
    assert page.table("stage", "read", "kept", "rejected")[0]["read = kept + rejected"] == "yes"
    assert sorted(p.name for p in (tmp_path / "out" / "report_assets").iterdir()) == [
        "languages.png",
        "lengths.png",
    ]


@pytest.mark.parametrize("damage", ["manifest removed", "log changed"])
def test_unfinished_inputs_are_reported(stage_outputs: dict[str, Path], tmp_path: Path, damage: str) -> None:
    sft = tmp_path / "sft"
    shutil.copytree(stage_outputs["sft"], sft, ignore=shutil.ignore_patterns("checkpoint-*"))
    if damage == "manifest removed":
        (sft / MANIFEST).unlink()
        reason = f"unfinished: {sft / MANIFEST} is missing: {sft} holds no finished train_sft output"
    else:
        with open(sft / "train_log.jsonl", "a", encoding="utf-8") as handle:
            handle.write('{"step": 99, "loss": 0.0}\n')
        reason = f"unfinished: {sft / 'train_log.jsonl'} changed after train_sft wrote it"
    exports = tmp_path / "adapters"
    shutil.copytree(stage_outputs["export_root"], exports)
    half = exports / "k12-orpo"
    half.mkdir()
    (half / "README.md").write_text("half", encoding="utf-8")
    result = write_report(
        report_config(stage_outputs, tmp_path / "out", sft_dir=str(sft), export_root=str(exports))
    )
    sft_line, export_line = result["missing"]
    assert sft_line.startswith(f"Training: sft: {reason}")
    assert export_line.startswith(
        f"Exports: k12-orpo: unfinished: {half / MANIFEST} is missing: {half} holds no"
    )
    page = Page(Path(result["html"]).read_text(encoding="utf-8"))
    assert [row["run"] for row in page.table("run", "stage", "folder", "steps")] == ["align"]
    assert "curves_sft.png" not in " ".join(result["assets"])
    assert page.table("file", "size")[0]["file"].startswith(str(exports / "k12-dpo"))


def test_dry_run_lists_the_inputs_and_writes_nothing(
    stage_outputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    cfg = report_config(
        stage_outputs, out, align_dirs={"align": str(stage_outputs["align"]), "orpo": str(tmp_path / "none")}
    )
    config = write_yaml(tmp_path / "report.yaml", cfg)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert run_stage("report", ["--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not out.exists()
    for label, stage in (("data", "prepare_data"), ("run sft", "train_sft"), ("run align", "train_dpo")):
        assert re.search(rf"^  {label} +\S+: finished {stage}$", printed, re.M), label
    assert re.search(r"^  run orpo +\S+: not run: ", printed, re.M)
    assert re.search(r"^  export k12-dpo +\S+: finished export_lora$", printed, re.M)
    assert f"  {out / 'report.html'}\n  {out / 'report.md'}\n" in printed


@pytest.mark.parametrize("breaks", ["eval_section", "to_html"])
def test_a_failure_leaves_no_report(
    stage_outputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, breaks: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in ("report.html", "report.md"):
        (out / name).write_text("an older report", encoding="utf-8")

    def fail(*args: object) -> None:
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(build, breaks, fail)
    with pytest.raises(RuntimeError, match="rendering failed"):
        write_report(report_config(stage_outputs, out, align_dirs={}))
    assert sorted(p.name for p in out.iterdir()) == []


def test_run_names_must_be_file_names() -> None:
    from k12tune.config.loader import load_config

    for bad in ("sft", "a/b", "../x", ""):
        with pytest.raises(ConfigError, match="align_dirs"):
            load_config(ReportConfig, None, [f"align_dirs={{{bad!r}: outputs/align}}"])
