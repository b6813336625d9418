"""The fork server's preload (`fork_server`, then `warmup`): after it, judging real data and
copying its lines load no further kernel; scipy.linalg, pydantic and the config package were
never imported; the warm-up judged under the config's default settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from k12tune.data.pipeline import FORK_SERVER_PRELOAD

_CHECK = """
import sys, tempfile
from pathlib import Path

import importlib

for module in sys.argv[1].split(","):  # `pipeline.FORK_SERVER_PRELOAD`, as the fork server does
    importlib.import_module(module)
unwanted = [name for name in ("pydantic", "k12tune.config") if name in sys.modules]
assert not unwanted, f"the preload imported {unwanted}"  # see `judge.JudgeSettings`

import numpy as np
from numba.core.registry import CPUDispatcher

from k12tune.data import kernels, sftscan
from k12tune.data.judge import RawBatch, judge_batch
from k12tune.data.linecopy import LineWindow, copy_window
from k12tune.data.readers import ReadStats, batched, iter_file, jsonl_chunks


def loaded():
    return {
        (module.__name__, name): len(kernel.signatures)
        for module in (kernels, sftscan)
        for name, kernel in vars(module).items()
        if isinstance(kernel, CPUDispatcher)
    }


before = loaded()
folder = tempfile.mkdtemp()
for argument in sys.argv[2:]:
    stage, path = argument.split(":", 1)
    if path.endswith(".jsonl"):
        batches = [RawBatch(stage, "real", 1.0, chunk) for chunk in jsonl_chunks(Path(path), ReadStats())]
    else:
        items = batched(iter_file(Path(path), "real", ReadStats()), 64)
        batches = [RawBatch.of(stage, "real", 1.0, batch) for batch in items]
    for batch in batches:
        batch.spill_dir = folder
        verdicts = judge_batch(batch)
        out = Path(folder) / f"{stage}.out"
        out.touch()
        # as the pipeline builds a window: arrays indexed by the sampler's order
        order = np.arange(len(verdicts.line_ends))[::-1].copy()
        file_nos = np.frombuffer(np.zeros(len(order), dtype=np.int16).tobytes(), dtype=np.int16)[order]
        offsets, sizes = (bounds[order] for bounds in verdicts.spill_bounds())
        copy_window(LineWindow([verdicts.spill], file_nos, offsets, sizes, str(out), 0))
new = {key: (n, loaded()[key]) for key, n in before.items() if loaded()[key] != n}
assert "scipy.linalg" not in sys.modules, "scipy.linalg was imported"  # numba's BLAS probe

# The warm-up's settings, built without the config package, are the config's defaults.
from k12tune.config.data import DataConfig
from k12tune.data.judge import JudgeSettings
from k12tune.data.warmup import _SETTINGS

defaults = JudgeSettings.of(DataConfig())
assert [(type(r), vars(r)) for r in _SETTINGS.rules] == [(type(r), vars(r)) for r in defaults.rules]
assert (_SETTINGS.aliases, _SETTINGS.val_fraction) == (defaults.aliases, defaults.val_fraction)
print(sum(before.values()), sorted(new.items()))
"""


def test_real_batches_need_no_kernel_that_the_warm_up_did_not_load(tmp_path: Path, shared_data: Path) -> None:
    script = tmp_path / "check.py"
    script.write_text(_CHECK)
    files = [
        ("sft", "prompt_response_zh.jsonl"),
        ("sft", "messages_en.jsonl"),
        ("sft", "alpaca_zh_demo.json"),
        ("pref", "dpo_zh_demo.json"),
        ("pref", "dpo_en_demo.json"),
    ]
    arguments = [f"{stage}:{shared_data / stage / name}" for stage, name in files]
    result = subprocess.run(
        [sys.executable, str(script), ",".join(FORK_SERVER_PRELOAD), *arguments],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded, new = result.stdout.split(maxsplit=1)
    assert int(loaded) >= 8  # the scanner and the kernels each stage runs
    assert new.strip() == "[]"
