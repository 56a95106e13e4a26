"""Selection strategies, one table: ``fps`` (coverage), ``error`` (worst model error), ``hybrid``.

* ``fps``: farthest-point sampling on descriptors (exact, or distributed over shards).
* ``error``: the ``k`` structures with the largest model error against their own labels
  (``scorer``: any function records -> errors; ``calculator_scorer`` wraps an ASE calculator
  factory; ``omni_model.scorer.model_scorer`` builds one from a checkpoint, and the CLI passes it in).
* ``hybrid``: FPS restricted to the ``pool * k`` largest-error structures: diverse among the
  hard ones.

No strategy ever falls back to another or to random picks: a missing model or label is an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from omni_data.schema import Record

Scorer = Callable[[Sequence[Record]], np.ndarray]
"""Per-record error (higher = worse), same order as the records."""

STRATEGIES: dict[str, str] = {
    "fps": "farthest-point sampling on descriptors (coverage of the space)",
    "error": "largest model error against the stored labels (needs --model)",
    "hybrid": "farthest-point sampling among the largest-error structures (needs --model)",
}


@dataclass
class Picks:
    """Row indices in pick order, the FPS distance at selection (NaN for error picks), scores."""

    rows: np.ndarray
    distance: np.ndarray
    score: np.ndarray | None = None


def record_error(record: Record, calc: Any) -> float:
    """|E_pred - E| per atom plus force RMSE (eV/Å) of one record; missing both is an error."""
    from ase import Atoms

    if record.energy is None and record.forces is None:
        raise ValueError(f"record {record.id!r}: no energy or forces to measure a model error on")
    periodic = record.cell is not None and bool(np.any(record.pbc))
    atoms = Atoms(numbers=record.numbers, positions=record.positions,
                  cell=record.cell if periodic else None, pbc=record.pbc if periodic else False)
    atoms.calc = calc
    err = 0.0
    if record.energy is not None:
        err += abs(float(atoms.get_potential_energy()) - record.energy) / len(record.numbers)
    if record.forces is not None:
        diff = np.asarray(atoms.get_forces()) - record.forces
        err += float(np.sqrt(np.mean(diff * diff)))
    return err


def calculator_scorer(make_calc: Callable[[str], Any]) -> Scorer:
    """A scorer from a factory ``task -> ASE calculator`` (one calculator per task, reused)."""
    cache: dict[str, Any] = {}

    def score(records: Sequence[Record]) -> np.ndarray:
        out = np.empty(len(records))
        for i, rec in enumerate(records):
            if rec.task not in cache:
                cache[rec.task] = make_calc(rec.task)
            out[i] = record_error(rec, cache[rec.task])
        return out

    return score


def score_records(scorer: Scorer, records: Iterable[Record], batch: int = 256) -> np.ndarray:
    """Run ``scorer`` over a stream of records in batches; every score must be finite."""
    out: list[np.ndarray] = []
    chunk: list[Record] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) == batch:
            out.append(np.asarray(scorer(chunk), dtype=np.float64))
            chunk = []
    if chunk:
        out.append(np.asarray(scorer(chunk), dtype=np.float64))
    scores = np.concatenate(out) if out else np.zeros(0)
    if not np.isfinite(scores).all():
        raise ValueError(f"scorer returned non-finite errors for {int((~np.isfinite(scores)).sum())} records")
    return scores


def top_error(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Rows of the ``k`` largest scores (ties: lower row first), optionally within ``allowed``."""
    rows = np.arange(len(scores)) if allowed is None else np.flatnonzero(allowed)
    order = np.lexsort((rows, -scores[rows]))
    return rows[order[:k]]


def pick_error(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> Picks:
    rows = top_error(scores, k, allowed)
    return Picks(rows, np.full(len(rows), np.nan), scores[rows])


def pick_hybrid(x: np.ndarray, scores: np.ndarray, k: int, pool: float, seeds: np.ndarray,
                start_rule: Callable[[np.ndarray], int], allowed: np.ndarray | None = None) -> Picks:
    """FPS among the ``ceil(pool * k)`` largest-error rows, seeded like plain FPS."""
    from omni_data.select.fps import fps

    cand = np.sort(top_error(scores, int(np.ceil(pool * k)), allowed))
    if len(cand) < k:
        raise ValueError(f"hybrid: only {len(cand)} candidates for {k} picks")
    sub = x[cand]
    m = len(seeds)
    both = np.concatenate([seeds.astype(np.float32), sub]) if m else sub
    res = fps(both, m + k, start_idx=list(range(m)) if m else start_rule(cand))
    rows = cand[res.indices[m:] - m]
    return Picks(rows, np.sqrt(res.sqdist[m:].astype(np.float64)), scores[rows])
