"""Signs of life while the demo trains (issue 22, item 5): a line every tenth of a training's
steps with the step, the training loss, the time so far and an estimate of the time left.

The trainer reports a ``omni_model.train.progress.TrainProgress`` every ``run.log_every`` steps
to the callback passed as ``Trainer(cfg, progress=...)``; :class:`TrainingProgress` is that
callback: it keeps every tenth of the steps (or one after a quiet minute, on a loaded machine)
and the last step, and prints the trainer's own line after the stage name::

    [demo] train_plain        step 500/2500 (20.0%)  stage all  loss 0.0123  elapsed 31s  ETA 2m04s
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["TrainingProgress"]


class TrainingProgress:
    """The demo's progress callback for one training (``label``): lines go to ``echo``.

    ``every``: steps between lines (default a tenth of the total); ``quiet``: seconds after
    which a report is shown even between tenths. The elapsed time and the estimate of the time
    left are the trainer's (measured from the start of this run or of its resumption).
    """

    def __init__(
        self,
        label: str,
        echo: Callable[[str], None],
        every: int | None = None,
        quiet: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.echo = echo
        self.every = every
        self.quiet = quiet
        self.clock = clock
        self.last_step: int | None = None
        self.last_time = clock()
        self.lines: list[str] = []

    def __call__(self, report: Any) -> None:
        """Show ``report`` (a ``TrainProgress``) when a tenth was crossed, after a quiet spell, or at the end."""
        every = max(1, self.every or report.total // 10)
        if self.last_step is None:  # a resumed training starts at its checkpoint's step
            self.last_step = report.step - 1
        now = self.clock()
        crossed = report.step // every > self.last_step // every
        if not (crossed or report.step >= report.total or now - self.last_time >= self.quiet):
            return
        self.last_step, self.last_time = report.step, now
        line = f"[demo] {self.label:<18} {report.line()}"
        self.lines.append(line)
        self.echo(line)
