"""The elapsed/ETA formatter of progress lines is a public helper (``omni_data.progress_clock``);
``recompute.progress`` no longer reaches into ``select.progress`` for a private name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from omni_data.progress_clock import format_clock


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (5.4, "5s"),
        (59.6, "1m00s"),
        (245, "4m05s"),
        (3723, "1h02m03s"),
        (90061, "25h01m01s"),
        (-2, "0s"),
    ],
)
def test_format_clock(seconds: float, text: str) -> None:
    assert format_clock(seconds) == text


def test_recompute_progress_does_not_import_select() -> None:
    code = (
        "import sys, omni_data.recompute.progress as p; "
        "print(sorted(m for m in sys.modules if m.startswith('omni_data.select')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]"
