"""The console summary printed at the end of `prepare_data`: what was read, kept and dropped
(and why), and which files were written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k12tune.config.data import DataConfig
from k12tune.data.pipeline import REJECTED, REPORT, STAGES, output_names
from k12tune.manifest import MANIFEST


def summarise(cfg: DataConfig, report: dict[str, Any], seconds: float) -> str:
    out = Path(cfg.out_dir)
    lines = [f"prepare_data finished in {seconds:.1f} s"]
    for stage in STAGES:
        r = report[stage]
        rules = (
            ", ".join(f"{rule} {n}" for rule, n in sorted(r["rules"].items(), key=lambda kv: -kv[1]))
            or "none"
        )
        zh = r["train_zh_share"]
        lines.append(
            f"  {stage}: read {r['read']:,} = kept {r['kept']:,} + rejected {r['rejected']:,}; "
            f"train {r['train_lines']:,} lines ({'' if zh is None else f'{zh:.0%} zh'}), "
            f"val {r['val_records']:,}"
        )
        lines.append(f"    rejected by rule: {rules}")
    lines.append("wrote:")
    names = [n for stage in STAGES for n in output_names(stage)] + [REJECTED, REPORT, MANIFEST]
    lines += [f"  {out / name}" for name in names]
    return "\n".join(lines)
