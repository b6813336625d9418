"""`python -m k12tune.demo.base <out_dir> <data_proc>`: the demo's base model, a tiny offline
Qwen2 (see `k12tune.tiny`) whose tokenizer is trained on the demo's prepared texts, so that the
demo runs the real training code on any CPU in seconds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from k12tune.tiny import build_tiny_base


def demo_texts(data_proc: Path) -> list[str]:
    texts = []
    for path in sorted(data_proc.glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                turns = record.get("messages") or [*record.get("prompt", []), *record.get("chosen", [])]
                texts.append("\n".join(turn["content"] for turn in turns if isinstance(turn, dict)))
    return texts


def build_demo_base(out_dir: Path, data_proc: Path) -> Path:
    return build_tiny_base(out_dir, demo_texts(data_proc))


if __name__ == "__main__":
    print(f"tiny Qwen2 base written to {build_demo_base(Path(sys.argv[1]), Path(sys.argv[2]))}")
