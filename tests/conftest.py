"""Shared fixtures: where the real sample data lives (``../shared/data`` beside the checkout)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OMNI_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample files; tests that need them fail loudly if the folder is missing."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real sample data not found at {SHARED_DATA} (set OMNI_SHARED_DATA)")
    return SHARED_DATA
