"""Shared fixtures: where the real sample data lives (``../shared/data`` beside the checkout)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OMNI_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample files; tests that need them fail loudly if the folder is missing."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real sample data not found at {SHARED_DATA} (set OMNI_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def optional() -> Callable[[str, str], ModuleType]:
    """``optional(module, extra)``: import an optional dependency, or skip the test when it is not
    installed (a data-only install runs the rest of the suite). With ``OMNI_REQUIRE_EXTRAS=1``,
    as in CI, which installs every extra, a missing one fails the test instead of hiding it."""

    def load(module: str, extra: str) -> ModuleType:
        if os.environ.get("OMNI_REQUIRE_EXTRAS") == "1":
            return importlib.import_module(module)
        return pytest.importorskip(module, reason=f"needs {module}: pip install 'omni[{extra}]'")

    return load
