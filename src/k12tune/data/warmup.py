"""The data stage's compiled kernels, loaded once in the fork server for all its workers.

Importing this module judges a few made-up records of each stage and copies their output
lines as the training-file copy does, in a temporary folder. Every kernel a worker runs is
then loaded (numba loads a kernel from its cache at its first call with each argument type),
and the workers that the fork server forks from this process start with them
(`parallel.WorkerPool`'s `preload`). Without it each worker spends about 0.6 s importing and
loading them, all workers at once, so that on a 2-CPU machine nothing else runs meanwhile;
with it one process does that while the main process reads its input ahead
(`parallel.read_ahead`). 1M records on 2 CPUs: 6.65, 6.97, 6.79 s before, 6.39, 6.19,
6.30 s after, runs alternated. `tests/data/test_warmup.py` checks that a real batch then
needs no kernel this did not load. It only saves time: should it fail, the workers load the
kernels themselves.
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile

import numpy as np
import orjson

from k12tune.data.aliases import merged_aliases
from k12tune.data.filters import ChineseShareFilter, LengthFilter, RepetitionFilter
from k12tune.data.judge import JudgeSettings, RawBatch, judge_batch, start_worker
from k12tune.data.linecopy import LineWindow, copy_window
from k12tune.data.readers import JsonlChunk

log = logging.getLogger(__name__)

_ZH = "分数的分母表示把整体平均分成几份，分子表示取了其中的几份。"
# Per stage: records that pass, and ones that each rule drops (reject lines are a kernel too):
# under `_SETTINGS`, whose rules are the config's defaults (built here, as the config package
# and pydantic are not imported in this process: see `judge.JudgeSettings`).
_SETTINGS = JudgeSettings(
    (LengthFilter(8, 2048), ChineseShareFilter(0.3, False), RepetitionFilter(0.6)), merged_aliases({}), 0.02
)
_RECORDS: dict[str, list[dict]] = {
    "sft": [{"prompt": f"{_ZH}（{k}）", "response": _ZH * 3} for k in range(8)]
    + [
        {
            "messages": [
                {"role": "user", "content": "Why is the sky blue?"},
                {"role": "assistant", "content": "Light scatters."},
            ]
        },
        {"instruction": "短", "input": "", "output": "好"},
        {"prompt": _ZH, "response": "哈" * 200},
    ],
    "pref": [{"prompt": f"{_ZH}（{k}）", "chosen": _ZH * 2, "rejected": _ZH} for k in range(8)]
    + [{"prompt": _ZH, "chosen": _ZH, "rejected": _ZH}],
}


def warm_up() -> None:
    """Judge `_RECORDS` of each stage in this process and copy each stage's lines kept."""
    start_worker(_SETTINGS)
    with tempfile.TemporaryDirectory(prefix="k12tune-warmup-") as folder:
        for stage, records in _RECORDS.items():
            path = os.path.join(folder, f"{stage}.jsonl")
            data = b"".join(orjson.dumps(record) + b"\n" for record in records)
            with open(path, "wb") as handle:
                handle.write(data)
            batch = RawBatch(stage, "warmup", 1.0, JsonlChunk(path, 0, len(data), 1))
            batch.spill_dir = folder
            verdicts = judge_batch(batch)
            out_path = os.path.join(folder, f"{stage}.out")
            open(out_path, "wb").close()
            offsets, sizes = verdicts.spill_bounds()
            file_nos = np.zeros(len(sizes), dtype=np.int16)
            copy_window(LineWindow([verdicts.spill], file_nos, offsets, sizes, out_path, 0))


try:
    warm_up()
except Exception as exc:  # an optimisation only: the workers load what they need themselves
    log.warning("k12tune: loading the data-stage kernels ahead failed (%s); each worker loads them", exc)
# Everything loaded so far lives as long as the workers that the fork server forks from here:
# frozen, it is out of their collections' sight. Their start-up set off a full collection that
# traversed it all: 0.04 s per worker (perf), on the stage's critical path.
gc.freeze()
