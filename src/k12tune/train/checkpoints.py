"""Which checkpoint to resume from. The HF Trainer would take the highest-numbered
`checkpoint-N` folder without checking that it was written completely; a crash while saving
leaves such a folder behind, and resuming from it fails or, worse, silently restarts the
optimizer. Here a checkpoint counts only when every file a resume needs is present."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from k12tune.errors import ConfigError

log = logging.getLogger(__name__)

# What `Trainer.train(resume_from_checkpoint=...)` reads back for a PEFT model.
REQUIRED = ("trainer_state.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt")
_NAME = re.compile(r"checkpoint-(\d+)")


def is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED)


def last_complete_checkpoint(root: Path) -> Path | None:
    """The highest-numbered complete `checkpoint-N` under `root`; incomplete ones are logged."""
    found = []
    for folder in root.glob("checkpoint-*") if root.is_dir() else []:
        match = _NAME.fullmatch(folder.name)
        if match and folder.is_dir():
            found.append((int(match.group(1)), folder))
    for _, folder in sorted(found, reverse=True):
        if is_complete(folder):
            return folder
        missing = [name for name in REQUIRED if not (folder / name).is_file()]
        log.warning("skipping incomplete checkpoint %s (missing %s)", folder, ", ".join(missing))
    return None


def resolve_resume(resume: str, out_dir: Path) -> Path | None:
    """`resume` of the config -> the checkpoint to resume from, or None to start fresh."""
    if resume == "never":
        return None
    if resume == "auto":
        return last_complete_checkpoint(out_dir)
    folder = Path(resume)
    if not is_complete(folder):
        raise ConfigError(
            f"train.resume: {folder} is not a complete checkpoint (needs {', '.join(REQUIRED)})"
        )
    return folder
