"""Benchmark of the data stage against its floor, side by side in one run.

    python bench/bench_prepare.py                 # 1,000,000 records, about 1 GB
    python bench/bench_prepare.py --records 50000 # quick check

1. Generates a synthetic corpus of mixed Chinese/English SFT records (70% prompt/response,
   15% alpaca, 15% messages; about 1 KB each, 3% exact duplicates, 2% repetitive, a few bad
   lines) as JSONL files under --workdir, deterministically from --seed.
2. Floor: a subprocess that only parses every line of the same files with the fastest JSON
   parser installed (each candidate is timed on the first file; the fastest is used).
3. Stage: a subprocess that runs `prepare_data` on the same files with the shipped defaults
   (`workers: 0`, auto: one worker process per CPU for an input this size).
Floor and stage run `--repeat` times, alternately, and the fastest run of each counts: noise
only ever adds time (on the 2-core CI VM the first stage run after writing the corpus was up
to 30% slower than the next ones, the floor varied less; the corpus is now flushed to disk
before the runs). Every run's time is printed.
Prints records/s and peak RSS of both (the floor's VmHWM; for the stage, the larger of the main
process's VmHWM and the sampled peak of the whole process tree, workers included), and the
ratio stage time / floor time. Not a timed test: run it by hand and report the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ZH_SENTENCES = [
    "光合作用是绿色植物利用光能把二氧化碳和水合成有机物并释放氧气的过程。",
    "分数的分母表示把整体平均分成几份，分子表示取了其中的几份。",
    "我们在计算异分母分数加法时，要先通分，再把分子相加。",
    "古诗《静夜思》表达了诗人李白对故乡的深切思念。",
    "地球绕着太阳公转一周大约需要三百六十五天，这就是一年。",
    "学习英语单词时，可以把单词放在句子里记忆，效果会更好。",
    "一个数乘以十，就是在它的末尾添上一个零，小数则是小数点向右移动一位。",
    "物体受到的浮力等于它排开的液体所受的重力，这就是阿基米德原理。",
]
EN_SENTENCES = [
    "Photosynthesis turns light energy into chemical energy stored in sugar.",
    "To add fractions with different denominators, first find a common denominator.",
    "The water cycle moves water between the oceans, the air and the land.",
    "A prime number has exactly two divisors: one and itself.",
    "Reading aloud every day helps children build vocabulary and confidence.",
]


def make_text(rng: random.Random, zh: bool, target_chars: int) -> str:
    pool = ZH_SENTENCES if zh else EN_SENTENCES
    parts, size = [], 0
    while size < target_chars:
        sentence = rng.choice(pool)
        parts.append(
            f"{sentence}（{rng.randrange(10**6)}）" if zh else f"{sentence} ({rng.randrange(10**6)})"
        )
        size += len(parts[-1])
    return "".join(parts) if zh else " ".join(parts)


def make_record(rng: random.Random, i: int) -> dict:
    zh = rng.random() < 0.7
    length = int(rng.lognormvariate(5.6, 0.6)) if zh else int(rng.lognormvariate(6.4, 0.5))
    prompt = make_text(rng, zh, max(8, length // 5))
    answer = make_text(rng, zh, max(8, length))
    if rng.random() < 0.02:
        answer = ("哈哈哈" if zh else "ha ") * (length // 3 + 10)
    shape = rng.random()
    if shape < 0.7:
        return {"id": f"r{i}", "prompt": prompt, "response": answer}
    if shape < 0.85:
        return {"instruction": prompt, "input": "", "output": answer}
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def generate(raw: Path, records: int, seed: int, files: int = 8) -> tuple[int, int]:
    import orjson

    rng = random.Random(seed)
    folder = raw / "synthetic"
    folder.mkdir(parents=True)
    per_file = -(-records // files)
    total_bytes = written = 0
    recent: list[bytes] = []
    for f in range(files):
        lines = []
        for i in range(f * per_file, min(records, (f + 1) * per_file)):
            if recent and rng.random() < 0.03:
                line = rng.choice(recent)  # exact duplicate
            elif rng.random() < 0.0005:
                line = b'{"prompt": "broken'  # malformed
            else:
                line = orjson.dumps(make_record(rng, i))
                recent = [*recent[-999:], line]
            lines.append(line)
        payload = b"\n".join(lines) + b"\n"
        (folder / f"part-{f:03d}.jsonl").write_bytes(payload)
        total_bytes += len(payload)
        written += len(lines)
    return written, total_bytes


PARSERS = {
    "orjson": "import orjson; loads = orjson.loads",
    "msgspec": "import msgspec; loads = msgspec.json.Decoder().decode",
    "simdjson": "import simdjson; loads = simdjson.Parser().parse",
    "ujson": "import ujson; loads = ujson.loads",
    "json": "import json; loads = json.loads",
}

FLOOR = """
import sys, time
{setup}
t = time.perf_counter(); n = 0
for path in sys.argv[1:]:
    with open(path, 'rb') as handle:
        for line in handle:
            if line.strip():
                try:
                    loads(line)
                except Exception:
                    pass
                n += 1
{peak}
print(n, time.perf_counter() - t, peak_kib())
"""

STAGE = """
import sys, time, logging, threading
import psutil
from k12tune.config.data import DataConfig
from k12tune.data.pipeline import prepare_data, resolve_workers
logging.disable(logging.WARNING)
cfg = DataConfig(
    raw_dir=sys.argv[1], out_dir=sys.argv[2], sft_sources=[{{"name": "synthetic"}}], pref_sources=[],
    workers=int(sys.argv[3]),
)
# Peak resident memory of the whole process tree (main process plus workers), sampled every
# 20 ms. The tree is listed again every 10th sample only: listing it reads every process of
# the machine (about 1 ms, which at 50 Hz took 5% of a CPU, and the GIL, from the stage).
tree_peak, done = [0], threading.Event()
def sample():
    me = psutil.Process()
    tree, tick = [me], 0
    while not done.wait(0.02):
        try:
            if tick % 10 == 0:
                tree = [me, *me.children(recursive=True)]
            tick += 1
            total = sum(p.memory_info().rss for p in tree)
        except psutil.Error:
            tick = 0  # a process ended: list the tree again
            continue
        tree_peak[0] = max(tree_peak[0], total // 1024)
threading.Thread(target=sample, daemon=True).start()
t = time.perf_counter()
report = prepare_data(cfg)
elapsed = time.perf_counter() - t
done.set()
{peak}
print(report["sft"]["read"], elapsed, max(peak_kib(), tree_peak[0]), report["sft"]["kept"],
      report["sft"]["rejected"], resolve_workers(cfg))
"""

# The child's own peak resident memory. Not ru_maxrss: Linux carries the parent's value
# across fork + exec, so every child would report at least the generator's peak.
PEAK = """
def peak_kib():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
"""


def run_child(code: str, args: list[str]) -> list[str]:
    """Run `code` in a fresh interpreter (which prints its own ru_maxrss); its stdout fields."""
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return result.stdout.split()


def fastest_parser(sample: Path) -> str:
    timings = {}
    for name, setup in PARSERS.items():
        try:
            fields = run_child(FLOOR.format(setup=setup, peak=PEAK), [str(sample)])
        except RuntimeError:
            continue  # not installed
        timings[name] = float(fields[1])
    return min(timings, key=timings.__getitem__)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", type=int, default=1_000_000, help="records to generate (default 1,000,000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument(
        "--workdir", type=Path, default=Path("bench/out"), help="scratch folder (deleted first)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the corpus and outputs afterwards")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of the floor and of the stage, alternately; the fastest of each counts (default 3)",
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="the stage's `workers` setting (default 0: auto)"
    )
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    raw, out = args.workdir / "raw", args.workdir / "data_proc"
    started = time.perf_counter()
    n_records, n_bytes = generate(raw, args.records, args.seed)
    # The corpus's pages are still dirty: written back while the runs are timed, they would
    # take a CPU from them (the kernel's writeback threads) and make the first runs the slow
    # ones. The runs then measure the stage, not the flushing of the benchmark's own files.
    os.sync()
    print(f"corpus: {n_records:,} records, {n_bytes / 1e9:.2f} GB in {time.perf_counter() - started:.0f} s")
    files = sorted(str(p) for p in (raw / "synthetic").glob("*.jsonl"))
    name = fastest_parser(Path(files[0]))
    floor_runs, stage_runs = [], []
    for _ in range(args.repeat):
        floor_runs.append(run_child(FLOOR.format(setup=PARSERS[name], peak=PEAK), files))
        shutil.rmtree(out, ignore_errors=True)
        stage_runs.append(run_child(STAGE.format(peak=PEAK), [str(raw), str(out), str(args.workers)]))
    print("runs (s): floor " + ", ".join(f"{float(f[1]):.2f}" for f in floor_runs), end="; ")
    print("stage " + ", ".join(f"{float(f[1]):.2f}" for f in stage_runs))
    floor_fields = min(floor_runs, key=lambda fields: float(fields[1]))
    stage_fields = min(stage_runs, key=lambda fields: float(fields[1]))
    floor_s, stage_s = float(floor_fields[1]), float(stage_fields[1])
    floor_rss, stage_rss = int(floor_fields[2]) / 1024, int(stage_fields[2]) / 1024  # KiB -> MiB
    rows = [
        ("floor: parse only (" + name + ")", int(floor_fields[0]), floor_s, floor_rss),
        (f"prepare_data ({stage_fields[5]} workers)", int(stage_fields[0]), stage_s, stage_rss),
    ]
    print(f"{'':34} {'records':>10} {'seconds':>9} {'records/s':>11} {'peak RSS MiB':>13}")
    for label, count, seconds, rss in rows:
        print(f"{label:34} {count:>10,} {seconds:>9.1f} {count / seconds:>11,.0f} {rss:>13,.0f}")
    print(f"kept {int(stage_fields[3]):,}, rejected {int(stage_fields[4]):,} (English is dropped by default)")
    print(f"ratio stage/floor: {stage_s / floor_s:.1f}x (target <= 3x); input {n_bytes / 2**20:,.0f} MiB")
    print(
        json.dumps(
            {
                "records": n_records,
                "bytes": n_bytes,
                "floor_s": floor_s,
                "stage_s": stage_s,
                "floor_rss_mib": round(floor_rss),
                "stage_rss_mib": round(stage_rss),
                "stage_processes": int(stage_fields[5]),
                "parser": name,
            }
        )
    )
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
