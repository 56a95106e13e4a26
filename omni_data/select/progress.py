"""Progress lines for long selections: picks done, current FPS radius, elapsed time and ETA.

``PickProgress`` is the callback ``fps.fps(progress=...)`` calls every few seconds (from the
calling thread, while the compiled kernel runs). It prints one line per call to a stream
(stderr by default), for example::

    select-bridge: 120,000/242,000 picks (49.6%)  radius 0.8125  elapsed 6m12s  ETA 5m40s

The ETA uses the pick rate since the previous line (FPS picks get cheaper as the radius
shrinks, so the overall average would overestimate the rest).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["PickProgress"]


def _clock(seconds: float) -> str:
    """``1h02m03s`` / ``4m05s`` / ``6s``."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


class PickProgress:
    """Callback ``(picks_done_including_seeds, sqdist_of_latest_pick) -> None`` printing a line."""

    def __init__(
        self,
        k: int,
        seeds: int = 0,
        label: str = "select-bridge",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.k = k
        self.seeds = seeds
        self.label = label
        self.stream = stream
        self.clock = clock
        self.t0 = clock()
        self.last = (self.t0, 0)

    def line(self, done: int, sqdist: float) -> str:
        """The text of one progress line (no newline); updates the rate window."""
        now = self.clock()
        picks = max(0, min(self.k, done - self.seeds))
        radius = math.sqrt(sqdist) if sqdist >= 0 else float("nan")
        t_last, p_last = self.last
        self.last = (now, picks)
        rate = (picks - p_last) / (now - t_last) if now > t_last and picks > p_last else 0.0
        if picks >= self.k:
            eta = "done"
        elif rate > 0:
            eta = "ETA " + _clock((self.k - picks) / rate)
        else:
            eta = "ETA ?"
        return (
            f"{self.label}: {picks:,}/{self.k:,} picks ({100.0 * picks / max(self.k, 1):.1f}%)"
            f"  radius {radius:.6g}  elapsed {_clock(now - self.t0)}  {eta}"
        )

    def __call__(self, done: int, sqdist: float) -> None:
        print(self.line(done, sqdist), file=self.stream or sys.stderr, flush=True)
