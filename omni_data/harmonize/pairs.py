"""Cross-task energy shifts on structures labelled by two tasks (the bridge set).

A bridge record carries ``metadata["source_id"]`` (the id of the same structure in its source
task) and ``metadata["source_task"]``. For each (source task → bridge task) pair we fit a
per-element shift ``E_bridge − E_source ≈ Σ_el n_el·δ_el`` by least squares and report the RMS
per-atom difference before and after the shift: what a linear (reference-energy) correction can
explain, and what is left for the model's task-specific parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omni_data.harmonize.references import element_counts

__all__ = ["SECTION", "PairFit", "find_pairs", "fit_pairs", "fit_shift"]

SECTION = "pairs"


@dataclass
class PairFit:
    """Per-element shift from ``source_task`` to ``task`` and the residual it leaves."""

    source_task: str
    task: str
    n_pairs: int
    delta: dict[int, float]
    rms_per_atom_before: float
    rms_per_atom_after: float
    mean_per_atom_before: float
    underdetermined: bool

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["delta"] = {str(z): v for z, v in sorted(self.delta.items())}
        return d


def fit_shift(
    source_task: str,
    task: str,
    numbers: Sequence[np.ndarray],
    e_source: Sequence[float],
    e_task: Sequence[float],
    ridge: float = 0.0,
) -> PairFit:
    """Least-squares per-element shift between two tasks' energies of the same structures."""
    if not numbers:
        raise ValueError(f"no pairs between {source_task!r} and {task!r}")
    counts = np.stack([element_counts(z) for z in numbers]).astype(np.float64)
    d_e = np.asarray(e_task, dtype=np.float64) - np.asarray(e_source, dtype=np.float64)
    cols = np.flatnonzero(counts.sum(axis=0))
    a = counts[:, cols]
    n = a.sum(axis=1)
    m = a.T @ a + ridge * np.eye(len(cols))
    delta, *_ = np.linalg.lstsq(m, a.T @ d_e, rcond=None)
    resid = (d_e - a @ delta) / n
    return PairFit(
        source_task=source_task,
        task=task,
        n_pairs=int(len(d_e)),
        delta={int(z): float(v) for z, v in zip(cols, delta)},
        rms_per_atom_before=math.sqrt(float(np.mean((d_e / n) ** 2))),
        rms_per_atom_after=math.sqrt(float(np.mean(resid**2))),
        mean_per_atom_before=float(np.mean(d_e / n)),
        underdetermined=int(np.linalg.matrix_rank(m)) < len(cols),
    )


def find_pairs(stores: Iterable[Any]) -> dict[tuple[str, str], tuple[list, list, list]]:
    """Group bridge records by (source task, task): (numbers, source energies, bridge energies).

    Sources are looked up by id in every given store. A missing source, a source in another task
    than declared, or a different composition is an error naming both ids.
    """
    stores = list(stores)
    groups: dict[tuple[str, str], tuple[list, list, list]] = {}
    for store in stores:
        for rec in store:
            sid = rec.metadata.get("source_id")
            if sid is None or rec.energy is None:
                continue
            src = _lookup(stores, sid, rec.id)
            declared = rec.metadata.get("source_task", src.task)
            if src.task != declared:
                raise ValueError(
                    f"bridge {rec.id!r}: source {sid!r} is in task {src.task!r}, metadata says {declared!r}"
                )
            if sorted(src.numbers.tolist()) != sorted(rec.numbers.tolist()):
                raise ValueError(f"bridge {rec.id!r} and its source {sid!r} differ in composition")
            if src.energy is None:
                continue
            nums, e_src, e_task = groups.setdefault((src.task, rec.task), ([], [], []))
            nums.append(rec.numbers)
            e_src.append(src.energy)
            e_task.append(rec.energy)
    return groups


def _lookup(stores: Sequence[Any], source_id: str, bridge_id: str) -> Any:
    for store in stores:
        try:
            return store.get(source_id)
        except KeyError:
            continue
    raise KeyError(f"bridge {bridge_id!r}: source {source_id!r} is in none of the given stores")


def fit_pairs(stores: Iterable[Any], ridge: float = 0.0) -> list[PairFit]:
    """One ``PairFit`` per (source task, bridge task) found in ``stores``."""
    return [fit_shift(a, b, *vals, ridge=ridge) for (a, b), vals in sorted(find_pairs(stores).items())]
