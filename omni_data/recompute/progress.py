"""Progress of a ``run-local`` batch: one line per finished job, with the counts and an ETA.

``JobProgress`` is the callback ``local.run_jobs(progress=...)`` calls once when the batch
starts and once after each job ends (from the calling thread), on stdout, for example::

    run-local: [3/10] done x23_benzene_3fbbc05c5f (12.3 s)  done 2, failed 1, running 2, pending 5  elapsed 41s  ETA 1m36s

The ETA is the elapsed wall time per finished job times the jobs left (parallel workers are
in that rate already).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from omni_data.progress_clock import format_clock

__all__ = ["Counts", "JobProgress"]


@dataclass
class Counts:
    """Jobs of a batch by where they are: finished (done, failed), in flight, waiting."""

    total: int
    slots: int  # jobs that can run at once (worker threads; 1 in this process)
    done: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def running(self) -> int:
        return min(self.slots, self.total - self.finished)

    @property
    def pending(self) -> int:
        return self.total - self.finished - self.running


class JobProgress:
    """Callback ``(counts, summary_or_None) -> None`` printing one line per call to ``stream``
    (stdout by default: the command's report; stderr stays for errors and Ctrl-C's one line)."""

    def __init__(
        self, label: str = "run-local", stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.label = label
        self.stream = stream
        self.clock = clock
        self.t0 = clock()

    def line(self, counts: Counts, summary: dict[str, Any] | None) -> str:
        """The text of one line: the job that just ended (if any), the counts, elapsed and ETA."""
        elapsed = self.clock() - self.t0
        tally = f"done {counts.done}, failed {counts.failed}, running {counts.running}, pending {counts.pending}"
        if summary is None:
            return f"{self.label}: {counts.total} job(s) to run, {counts.slots} at a time  {tally}"
        left = counts.total - counts.finished
        eta = "ETA " + format_clock(elapsed / counts.finished * left) if left else "finished"
        wall = f" ({summary['wall_time_s']:.1f} s)" if summary.get("wall_time_s") is not None else ""
        what = f"{summary['state']} {summary['job']}{wall}"
        if summary["state"] != "done" and summary.get("reason"):
            what += f": {summary['reason']}"
        return (
            f"{self.label}: [{counts.finished}/{counts.total}] {what}  {tally}  elapsed {format_clock(elapsed)}  {eta}"
        )

    def __call__(self, counts: Counts, summary: dict[str, Any] | None) -> None:
        print(self.line(counts, summary), file=self.stream or sys.stdout, flush=True)
