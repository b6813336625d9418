"""Shared fixtures. The real sample data lives in ../shared/data beside the checkout (CI has it
at the same place); tests read it in place and fail loudly when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        raise FileNotFoundError(
            f"{SHARED_DATA} is missing: the tests need ../shared/data beside the checkout"
        )
    return SHARED_DATA
