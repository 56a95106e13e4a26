"""Issue 22 item 5: training reports progress (step, loss, elapsed, ETA) every run.log_every steps
to a callback (the demo's hook) and, off a terminal, as one console line per report."""

from __future__ import annotations

import io

import pytest

from omni_model.train.progress import ConsoleProgress, TrainProgress, progress_at
from omni_model.train.trainer import Trainer

from .test_trainer import tiny_config


def test_trainer_calls_progress_every_log_every_steps(tmp_path, emt_store):
    reports: list[TrainProgress] = []
    tr = Trainer(
        tiny_config(emt_store, tmp_path / "r", run={"log_every": 2, "checkpoint_every": 0}), progress=reports.append
    )
    tr.run()
    assert tr.step == 7  # 3 steps of stage a-only, then one epoch of 4
    assert [r.step for r in reports] == [2, 4, 6, 7]  # every 2 steps, and the last
    assert {r.total for r in reports} == {7}
    assert [r.stage for r in reports] == ["a-only", "all", "all", "all"]
    losses = {h["step"]: h["loss"] for h in tr.history}
    assert [r.loss for r in reports] == [losses[r.step] for r in reports]
    assert all(r.eta is not None and r.eta >= 0 for r in reports) and reports[-1].eta == 0
    assert [r.elapsed for r in reports] == sorted(r.elapsed for r in reports)


def test_progress_line_and_eta():
    report = progress_at(step=120, first_step=20, total=180, stage="main", loss=0.004436, elapsed=50.0)
    assert report.eta == pytest.approx(30.0)  # 100 steps in 50 s, 60 left
    assert report.line() == "step 120/180 (66.7%)  stage main  loss 0.004436  elapsed 50s  ETA 30s"
    assert progress_at(180, 0, 180, "main", 0.1, 3725.0).line().endswith("elapsed 1h02m05s  done")
    assert progress_at(20, 20, 180, "main", 0.1, 0.0).eta is None  # no step of this run yet


def test_console_prints_lines_off_a_terminal():
    stream = io.StringIO()  # not a tty: lines, no bar
    console = ConsoleProgress(total=5, initial=0, stream=stream)
    for step in range(1, 6):
        console.step(progress_at(step, 0, 5, "main", 1.0 / step, float(step)), every=2)
    console.close()
    assert [line.split("  ")[0] for line in stream.getvalue().splitlines()] == [
        "step 2/5 (40.0%)",
        "step 4/5 (80.0%)",
        "step 5/5 (100.0%)",
    ]
