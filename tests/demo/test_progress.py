"""Signs of life while the demo trains (issue 22, item 5): a progress line every tenth of the
steps (or after a quiet minute) with step, loss, elapsed time and ETA, from the trainer's
progress callback; and a real training run through ``stage_train`` that prints them, resumes
from its checkpoint without doubling its log, and starts over when there is no checkpoint."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from omni_model.demo.progress import TrainingProgress
from omni_model.train.progress import progress_at

LINE = re.compile(r"^\[demo\] (\S+) +step (\d+)/(\d+) \(\S+%\)  stage (\S+)  loss (\S+)  elapsed (\S+)  (.*)$")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _train(
    watch: TrainingProgress, clock: Clock, steps: range, total: int, seconds_per_step: float, log_every: int = 10
) -> None:
    """What ``Trainer.run`` does: a report every ``log_every`` steps and at the last one."""
    first = steps.start - 1
    for step in steps:
        clock.now += seconds_per_step
        if step % log_every == 0 or step >= total:
            watch(progress_at(step, first, total, "all", 1.0 / step, (step - first) * seconds_per_step))


def test_a_line_every_tenth_of_the_steps_with_loss_elapsed_and_eta() -> None:
    clock, echoed = Clock(), []
    watch = TrainingProgress("train_plain", echoed.append, clock=clock)
    _train(watch, clock, range(1, 2501), 2500, 0.05)
    parsed = [LINE.match(line).groups() for line in echoed]
    assert [int(g[1]) for g in parsed] == list(range(250, 2501, 250))
    assert {g[0] for g in parsed} == {"train_plain"} and {g[2] for g in parsed} == {"2500"}
    assert echoed[0] == "[demo] train_plain        step 250/2500 (10.0%)  stage all  loss 0.004  elapsed 12s  ETA 1m52s"
    assert echoed[-1].endswith("step 2500/2500 (100.0%)  stage all  loss 0.0004  elapsed 2m05s  done")
    assert watch.lines == echoed


def test_a_slow_training_still_shows_life_and_a_resumed_one_estimates_from_its_own_pace() -> None:
    clock, echoed = Clock(), []
    watch = TrainingProgress("train_bridged", echoed.append, quiet=60.0, clock=clock)
    _train(watch, clock, range(401, 461), 1000, 2.0)  # resumed at step 400; 2 s a step
    # no tenth was crossed (the next is 500), but a report is shown after each quiet minute
    assert [int(LINE.match(line).group(2)) for line in echoed] == [430, 460]
    # 30 steps in 60 s since the resumption: the 570 steps left take 1140 s
    assert echoed[0].endswith("elapsed 1m00s  ETA 19m00s")


def test_a_short_training_shows_its_last_step() -> None:
    echoed: list[str] = []
    watch = TrainingProgress("t", echoed.append, clock=Clock())
    watch(progress_at(7, 0, 7, "all", 0.5, 1.0))
    assert LINE.match(echoed[-1]).group(2, 3) == ("7", "7") and echoed[-1].endswith("done")


def _tiny_store(path: Path) -> None:
    """Twelve EMT-labelled fcc cells over the demo's three task names."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from omni_data.schema import Record
    from omni_data.store import write_shard

    rng = np.random.default_rng(0)
    records = []
    for i in range(12):
        atoms = bulk(["Cu", "Au", "Pt"][i % 3], "fcc", a=3.7 + 0.2 * (i % 3), cubic=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        task = ("metals", "crystals", "molecules")[i % 3]
        records.append(
            Record(
                numbers=atoms.numbers.copy(),
                positions=atoms.positions.copy(),
                id=f"emt:{i}",
                dataset="emt",
                task=task,
                cell=atoms.cell.array.copy(),
                pbc=atoms.pbc.copy(),
                energy=float(atoms.get_potential_energy()),
                forces=atoms.get_forces().copy(),
                stress=atoms.get_stress().copy(),
                source_file="emt",
                source_index=i,
            ).normalized()
        )
    write_shard(path, "part-0", records)


def _csv_losses(path: Path) -> dict[int, float]:
    with open(path, newline="") as fh:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(fh)}


def test_stage_train_prints_progress_resumes_and_restarts(tmp_path, optional) -> None:
    optional("torch", "model")
    optional("e3nn", "model")
    from omni_model.demo.layout import DemoLayout
    from omni_model.demo.training import stage_train

    lay = DemoLayout(tmp_path)
    _tiny_store(lay.store("train"))
    echoed: list[str] = []
    res = stage_train(lay, "plain", "ci", seed=0, steps=12, progress=echoed.append)
    losses = _csv_losses(lay.run("plain") / "train.csv")
    assert sorted(losses) == list(range(1, 13)) and res["steps"] == 12
    parsed = [LINE.match(line).groups() for line in echoed]
    assert [(g[0], int(g[1]), int(g[2])) for g in parsed] == [("train_plain", 10, 12), ("train_plain", 12, 12)]
    for g in parsed:  # each line reports the loss the trainer logged for that step
        assert float(g[4]) == pytest.approx(losses[int(g[1])], rel=1e-3)
    assert [s for s, _ in res["loss"]] == list(range(1, 13))

    again: list[str] = []  # resumed from checkpoint-last.pt at step 12: nothing to do, log not doubled
    res = stage_train(lay, "plain", "ci", seed=0, steps=12, resume=True, progress=again.append)
    assert again == [] and sorted(_csv_losses(lay.run("plain") / "train.csv")) == list(range(1, 13))
    assert res["loss"] == [[float(s), v] for s, v in sorted(losses.items())]

    (lay.run("plain") / "checkpoint-last.pt").unlink()  # cut short before any checkpoint: start over
    (lay.run("plain") / "leftover.txt").write_text("from the cut-short run")
    stage_train(lay, "plain", "ci", seed=0, steps=12, resume=True, progress=again.append)
    assert sorted(_csv_losses(lay.run("plain") / "train.csv")) == list(range(1, 13))
    assert not (lay.run("plain") / "leftover.txt").exists() and LINE.match(again[-1]).group(2) == "12"
