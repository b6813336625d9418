"""The files an export is made of, and how a finished export replaces an older one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from k12tune.errors import DataError
from k12tune.manifest import MANIFEST
from k12tune.stack import ADAPTER_WEIGHTS

ADAPTER_CONFIG = "adapter_config.json"
CARD = "README.md"
# What transformers may save for a tokenizer; all plain text or JSON (never a pickle).
TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)


def copy_adapter(source: Path, staging: Path) -> list[str]:
    """The adapter's config and safetensors weights, byte for byte."""
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        shutil.copyfile(source / name, staging / name)
    return [ADAPTER_CONFIG, ADAPTER_WEIGHTS]


def copy_tokenizer(source: Path, staging: Path) -> list[str]:
    """The tokenizer saved beside the trained adapter (the one it was trained with), byte for byte."""
    names = [name for name in TOKENIZER_FILES if (source / name).is_file()]
    if "tokenizer_config.json" not in names:
        raise DataError(
            f"{source} holds no tokenizer (tokenizer_config.json): re-run the stage that trained it"
        )
    for name in names:
        shutil.copyfile(source / name, staging / name)
    return names


def file_names(folder: Path) -> list[str]:
    """Every file in `folder` but the manifest, sorted: what the manifest vouches for."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)


def replace_folder(staging: Path, target: Path) -> None:
    """Put the finished `staging` folder at `target` by renames on one file system, so no old
    file survives beside new ones: an old export is first moved aside (its manifest removed
    first, so a crash cannot leave it vouching for anything), then deleted."""
    old = target.with_name(f".old-{target.name}-{os.getpid()}")
    if target.exists():
        (target / MANIFEST).unlink(missing_ok=True)
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
