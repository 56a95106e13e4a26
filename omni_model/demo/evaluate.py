"""Score a trained checkpoint on the demo's held-out stores, per task head and across domains.

Predictions come from ``omni_model.calculator.OmniCalculator`` (the model's own ASE calculator);
this module only groups structures and averages absolute errors:

* same-domain: every test record is predicted with its own task's head (``record.task``);
* cross-domain: the held-out structures recomputed with GFN1-xTB (``test_truth`` store, collected
  under the crystals task) are predicted with the crystals head and grouped by the domain they
  came from (``metadata["source_task"]``), by ``omni_model.evaluation.transfer`` (raw energy
  error; the error left after per-element offsets fitted on the calibration split; forces).
  Metals and molecules never reached the crystals head in runs 1 and 2, so these rows measure
  transfer, and the offset-aligned column separates it from the energy-zero difference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.schema import Record

__all__ = ["omni_predictor", "same_domain_rows", "cross_domain_rows"]

Predictor = Callable[[Record, str], tuple[float, np.ndarray, np.ndarray | None]]


def omni_predictor(checkpoint: Path) -> Predictor:
    """Predict energy, forces and stress of a record under a task head with ``OmniCalculator``."""
    from ase import Atoms

    from omni_model.calculator import OmniCalculator

    calculators: dict[str, Any] = {}

    def predict(record: Record, task: str) -> tuple[float, np.ndarray, np.ndarray | None]:
        if task not in calculators:
            calculators[task] = OmniCalculator(str(checkpoint), task=task)
        atoms = Atoms(numbers=record.numbers, positions=record.positions, cell=record.cell, pbc=record.pbc)
        atoms.calc = calculators[task]
        energy = float(atoms.get_potential_energy())
        forces = np.asarray(atoms.get_forces(), dtype=float)
        stress = np.asarray(atoms.get_stress(voigt=True), dtype=float) if atoms.pbc.all() else None
        return energy, forces, stress

    return predict


class _Acc:
    """Running sums of absolute errors for one evaluation row."""

    def __init__(self) -> None:
        self.n = 0
        self.e: list[float] = []  # signed per-atom energy errors
        self.f: list[float] = []
        self.s: list[float] = []

    def add(self, record: Record, pred: tuple[float, np.ndarray, np.ndarray | None]) -> None:
        energy, forces, stress = pred
        self.n += 1
        if record.energy is not None:  # signed, per atom: the shifted MAE removes the mean offset
            self.e.append((energy - record.energy) / record.n_atoms)
        if record.forces is not None:
            self.f.extend(np.abs(forces - record.forces).ravel().tolist())
        if record.stress is not None and stress is not None:
            self.s.extend(np.abs(stress - record.stress).ravel().tolist())

    def row(self, kind: str, head: str, data: str) -> dict[str, Any]:
        mean = lambda xs: float(np.mean(np.abs(xs))) if len(xs) else None
        e = np.asarray(self.e)
        return {
            "kind": kind,
            "head": head,
            "data": data,
            "n": self.n,
            "energy_mae": mean(e),
            "energy_mae_shifted": mean(e - e.mean()) if len(e) else None,
            "forces_mae": mean(self.f),
            "stress_mae": mean(self.s),
        }


def same_domain_rows(records: Iterable[Record], predict: Predictor) -> list[dict[str, Any]]:
    """One row per task: its held-out records under its own head."""
    acc: dict[str, _Acc] = defaultdict(_Acc)
    for rec in records:
        acc[rec.task].add(rec, predict(rec, rec.task))
    return [acc[t].row("same-domain", t, f"{t} test") for t in sorted(acc)]


def cross_domain_rows(checkpoint: Path, truth_store: Path, head: str) -> list[dict[str, Any]]:
    """One row per source domain other than ``head``: the GFN1-xTB truth under the ``head`` task.

    Calls ``omni_model.evaluation.transfer.evaluate_checkpoint`` (what ``omni-train evaluate``
    runs): raw energy errors on split "test"; the same after per-element offsets fitted on split
    "val" (the calibration part, disjoint); force errors. Groups by ``metadata["source_task"]``.
    """
    from omni_model.evaluation.transfer import evaluate_checkpoint

    ev = evaluate_checkpoint(str(checkpoint), str(truth_store), split="test", calibration_split="val", head=head)
    rows = []
    for r in ev.rows:
        if r["data"] == head:  # the head's own domain recomputed with its own method: not transfer
            continue
        rows.append(
            {
                "kind": "cross-domain",
                "head": head,
                "data": f"{r['data']} test (GFN1-xTB)",
                **{
                    k: r[k]
                    for k in (
                        "n",
                        "n_calibration",
                        "test_split",
                        "calibration_split",
                        "energy_mae",
                        "energy_rmse",
                        "energy_mae_offset",
                        "energy_rmse_offset",
                        "forces_mae",
                        "forces_rmse",
                        "uncalibrated",
                    )
                },
                "stress_mae": None,
            }
        )
    return rows
