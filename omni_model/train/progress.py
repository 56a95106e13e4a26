"""Training progress: what ``Trainer.run`` reports every ``run.log_every`` steps.

A ``TrainProgress`` goes to every callback passed as ``Trainer(cfg, progress=fn)`` /
``train(cfg, progress=fn)`` (the demo shows each training with one), and, when
``run.progress`` is on, to the console: a tqdm bar on a terminal, otherwise (a log file, a pipe,
the demo's console) one line per report, for example::

    step 120/180 (66.7%)  stage main  loss 0.004436  elapsed 14s  ETA 7s
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["clock", "TrainProgress", "progress_at", "ConsoleProgress"]


def clock(seconds: float) -> str:
    """``1h02m03s`` / ``4m05s`` / ``6s``."""
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: global step of ``total``, the stage, the step's loss, wall times."""

    step: int
    total: int
    stage: str
    loss: float
    elapsed: float  # seconds since this run (or resume) started
    eta: float | None  # seconds left at this run's rate; None before the first step

    def line(self) -> str:
        pct = 100.0 * self.step / max(self.total, 1)
        eta = "done" if self.step >= self.total else ("ETA ?" if self.eta is None else f"ETA {clock(self.eta)}")
        return (
            f"step {self.step}/{self.total} ({pct:.1f}%)  stage {self.stage}  loss {self.loss:.4g}"
            f"  elapsed {clock(self.elapsed)}  {eta}"
        )


ProgressFn = Callable[[TrainProgress], None]


def progress_at(step: int, first_step: int, total: int, stage: str, loss: float, elapsed: float) -> TrainProgress:
    """A report after ``step`` of ``total``, this run having started at ``first_step``."""
    done = step - first_step
    eta = elapsed / done * (total - step) if done > 0 else None
    return TrainProgress(step, total, stage, loss, elapsed, eta)


class ConsoleProgress:
    """The built-in display: a tqdm bar on a terminal, else one ``TrainProgress.line()`` per report."""

    def __init__(self, total: int, initial: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.bar: Any = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=self.stream)
        self.shown = initial

    def step(self, report: TrainProgress, every: int) -> None:
        """Called after every step; prints a line every ``every`` steps and at the last one."""
        if self.bar is not None:
            self.bar.update(report.step - self.shown)
            self.bar.set_postfix(loss=f"{report.loss:.4g}", stage=report.stage)
        elif report.step % max(every, 1) == 0 or report.step >= report.total:
            print(report.line(), file=self.stream, flush=True)
        self.shown = report.step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
