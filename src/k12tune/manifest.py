"""Stage manifests: what a stage read, how it was configured, what it wrote, and that it
finished. The next stage calls `verify_manifest` and refuses a missing, unfinished or
mismatched input with a message that says which stage to re-run.

No timestamps or host names are recorded, so the same inputs and config give a byte-identical
manifest. File digests are BLAKE3 (see `digest`); the manifest names its algorithm.
"""

from __future__ import annotations

import importlib.metadata
import platform
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from k12tune import __version__
from k12tune.atomic import atomic_write_bytes
from k12tune.digest import ALGORITHM, LABELS, LEGACY, file_digest, known
from k12tune.errors import DataError

MANIFEST = "manifest.json"


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    versions = {"python": platform.python_version(), "k12tune": __version__}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _hash_files(paths: list[Path]) -> list[str]:
    """`digest.file_digest` of each path, a few files at once (the hashers release the GIL on
    large blocks, so the threads hash side by side)."""
    with ThreadPoolExecutor(min(len(paths), 4) or 1) as hashers:
        return list(hashers.map(file_digest, paths))


def digest_algorithm(manifest: dict[str, Any], path: Path) -> str:
    """The algorithm of the file digests in `manifest` (read from `path`): its "digest" key, or
    SHA-256 for a manifest from before that key."""
    algorithm = manifest.get("digest", LEGACY)
    if not known(algorithm):
        raise DataError(f"{path}: unknown digest algorithm {algorithm!r} (known: {', '.join(LABELS)})")
    return algorithm


def remove_manifest(out_dir: Path) -> None:
    (out_dir / MANIFEST).unlink(missing_ok=True)


def write_manifest(
    out_dir: Path,
    *,
    stage: str,
    config: dict[str, Any],
    inputs: dict[str, str],
    outputs: list[str],
    counts: dict[str, Any],
    libraries: tuple[str, ...],
    output_digests: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write `out_dir`'s manifest. The outputs are hashed here, except those whose digest the
    stage already knows (`output_digests`, from hashing them as it wrote them). Every digest,
    inputs' included, must be `digest.ALGORITHM`'s."""
    given = output_digests or {}
    unhashed = [name for name in outputs if name not in given]
    digests = given | dict(zip(unhashed, _hash_files([out_dir / name for name in unhashed]), strict=True))
    manifest = {
        "stage": stage,
        "complete": True,
        "digest": ALGORITHM,
        "versions": library_versions(libraries),
        "config": config,
        "inputs": inputs,
        "outputs": {name: digests[name] for name in outputs},
        "counts": counts,
    }
    atomic_write_bytes(
        out_dir / MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    return manifest


def verify_manifest(out_dir: Path, stage: str, *, check_hashes: bool = True) -> dict[str, Any]:
    """The manifest of a finished `stage` in `out_dir`; raises DataError naming the fix."""
    path = out_dir / MANIFEST
    rerun = f"run `k12tune {stage} --dry-run false` first"
    if not path.is_file():
        raise DataError(f"{path} is missing: {out_dir} holds no finished {stage} output; {rerun}")
    try:
        manifest = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{path}: unreadable manifest ({exc}); {rerun}") from None
    if manifest.get("stage") != stage or manifest.get("complete") is not True:
        raise DataError(f"{path}: not a finished {stage} manifest; {rerun}")
    algorithm = digest_algorithm(manifest, path)
    for name, digest in manifest.get("outputs", {}).items():
        target = out_dir / name
        if not target.is_file():
            raise DataError(f"{target} is listed in {path} but missing; {rerun}")
        if check_hashes and file_digest(target, algorithm) != digest:
            raise DataError(
                f"{target} changed after {stage} wrote it ({LABELS[algorithm]} differs from {path}); {rerun}"
            )
    return manifest
