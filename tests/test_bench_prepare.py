"""bench/bench_prepare.py on a small corpus: the runs are repeated and the fastest of each
side counts. Not a timed test: only the structure of the output is asserted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_prepare_repeats_each_side_and_keeps_the_fastest(tmp_path: Path) -> None:
    args = ["--records", "3000", "--repeat", "2", "--workdir", str(tmp_path / "work")]
    run = subprocess.run(
        [sys.executable, "bench/bench_prepare.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    runs = re.search(r"runs \(s\): floor ([\d.]+), ([\d.]+); stage ([\d.]+), ([\d.]+)", run.stdout)
    assert runs, run.stdout
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["records"] == 3000
    assert round(result["floor_s"], 2) == min(float(runs[1]), float(runs[2]))
    assert round(result["stage_s"], 2) == min(float(runs[3]), float(runs[4]))
    assert "ratio stage/floor" in run.stdout
    assert not (tmp_path / "work").exists()  # deleted unless --keep
