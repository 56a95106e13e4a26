"""Progress lines of long selections: picks, radius, elapsed time and ETA, worked by hand."""

from __future__ import annotations

import io

from omni_data.select.progress import PickProgress


def test_progress_lines_by_hand():
    now = [100.0]
    out = io.StringIO()
    watch = PickProgress(1000, seeds=10, stream=out, clock=lambda: now[0])
    now[0] = 105.0
    watch(110, 4.0)  # 100 picks in 5 s -> 900 left at 20/s = 45 s
    now[0] = 115.0
    watch(510, 0.25)  # 400 picks in the last 10 s -> 500 left at 40/s = 12.5 s -> 12 s
    now[0] = 3900.0
    watch(1010, 0.0)
    assert out.getvalue().splitlines() == [
        "select-bridge: 100/1,000 picks (10.0%)  radius 2  elapsed 5s  ETA 45s",
        "select-bridge: 500/1,000 picks (50.0%)  radius 0.5  elapsed 15s  ETA 12s",
        "select-bridge: 1,000/1,000 picks (100.0%)  radius 0  elapsed 1h03m20s  done",
    ]


def test_progress_without_rate_yet():
    watch = PickProgress(50, label="fps", clock=lambda: 7.0)
    assert watch.line(0, float("inf")) == "fps: 0/50 picks (0.0%)  radius inf  elapsed 0s  ETA ?"
