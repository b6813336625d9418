"""A manifest records each output's digest (BLAKE3, named in the manifest): hashed from the file,
or as the stage took it while writing the file. Manifests from before the "digest" key hold
SHA-256 digests and are still checked, as SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import blake3
import orjson
import pytest

from k12tune.errors import DataError
from k12tune.manifest import verify_manifest, write_manifest


def manifest_of(folder: Path, outputs: list[str], given: dict[str, str] | None = None) -> dict:
    write_manifest(
        folder,
        stage="s",
        config={},
        inputs={},
        outputs=outputs,
        counts={},
        libraries=(),
        output_digests=given,
    )
    return orjson.loads((folder / "manifest.json").read_bytes())


def test_outputs_are_hashed_unless_the_stage_gives_their_digest(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"a\n")
    (tmp_path / "b.jsonl").write_bytes(b"b\n")
    given = blake3.blake3(b"what the stage wrote").hexdigest()
    manifest = manifest_of(tmp_path, ["b.jsonl", "a.jsonl"], {"a.jsonl": given})
    assert manifest["digest"] == "blake3"
    assert manifest["outputs"] == {"a.jsonl": given, "b.jsonl": blake3.blake3(b"b\n").hexdigest()}


def test_a_changed_output_fails_verification_naming_the_algorithm(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"a\n")
    manifest_of(tmp_path, ["a.jsonl"])
    assert verify_manifest(tmp_path, "s")["outputs"]["a.jsonl"] == blake3.blake3(b"a\n").hexdigest()
    (tmp_path / "a.jsonl").write_bytes(b"A\n")
    with pytest.raises(DataError, match=r"a.jsonl changed after s wrote it \(BLAKE3 differs from"):
        verify_manifest(tmp_path, "s")
    verify_manifest(tmp_path, "s", check_hashes=False)


def test_a_manifest_from_before_the_digest_key_is_checked_with_sha256(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"a\n")
    old = {
        "stage": "s",
        "complete": True,
        "outputs": {"a.jsonl": hashlib.sha256(b"a\n").hexdigest()},
    }
    (tmp_path / "manifest.json").write_bytes(orjson.dumps(old))
    verify_manifest(tmp_path, "s")
    (tmp_path / "a.jsonl").write_bytes(b"A\n")
    with pytest.raises(DataError, match=r"\(SHA-256 differs from"):
        verify_manifest(tmp_path, "s")


def test_an_unknown_digest_algorithm_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"a\n")
    manifest = {"stage": "s", "complete": True, "digest": "md5", "outputs": {"a.jsonl": "0" * 32}}
    (tmp_path / "manifest.json").write_bytes(orjson.dumps(manifest))
    unknown = r"manifest.json: unknown digest algorithm 'md5' \(known: blake3, sha256\)"
    with pytest.raises(DataError, match=unknown):
        verify_manifest(tmp_path, "s")
