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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omni_data.schema import Record

__all__ = [
    "PickRequest",
    "Picks",
    "record_error",
    "calculator_scorer",
    "score_records",
    "top_error",
    "pick_error",
    "pick_hybrid",
    "strategy_fps",
    "strategy_error",
    "strategy_hybrid",
    "describe_strategies",
]

Scorer = Callable[[Sequence[Record]], np.ndarray]
"""Per-record error (higher = worse), same order as the records."""


@dataclass(frozen=True)
class PickRequest:
    """What a strategy gets: candidate rows of the descriptor set, how many, seeds, settings.

    ``cfg`` is the run's ``selection.SelectConfig`` and ``ds`` its ``DescriptorSet`` (typed
    loosely here: selection.py imports this module)."""

    cfg: Any
    ds: Any
    cand: np.ndarray
    k: int
    seeds: np.ndarray
    scorer: Scorer | None = None
    client: Any = None


@dataclass
class Picks:
    """Row indices in pick order, the FPS distance at selection (NaN for error picks), scores."""

    rows: np.ndarray
    distance: np.ndarray
    score: np.ndarray | None = None
    coverage: list[dict[str, tuple[int, float, float]]] | None = None  # distributed: per-shard task stats


def record_error(record: Record, calc: Any) -> float:
    """|E_pred - E| per atom plus force RMSE (eV/Å) of one record; missing both is an error."""
    from ase import Atoms

    if record.energy is None and record.forces is None:
        raise ValueError(f"record {record.id!r}: no energy or forces to measure a model error on")
    periodic = record.cell is not None and bool(np.any(record.pbc))
    atoms = Atoms(
        numbers=record.numbers,
        positions=record.positions,
        cell=record.cell if periodic else None,
        pbc=record.pbc if periodic else False,
    )
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


def pick_hybrid(
    x: np.ndarray,
    scores: np.ndarray,
    k: int,
    pool: float,
    seeds: np.ndarray,
    start_rule: Callable[[np.ndarray], int],
    allowed: np.ndarray | None = None,
) -> Picks:
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


Strategy = Callable[[PickRequest], "tuple[Picks, np.ndarray | None]"]
"""A strategy: request -> (picks as global rows, per-candidate scores or None)."""


def _scores(req: PickRequest) -> np.ndarray:
    from omni_data.select.selection import score_rows

    if req.scorer is None:
        raise ValueError(f"strategy {req.cfg.strategy!r} needs a model (--model CKPT)")
    return score_rows(req.ds, req.cand, req.scorer)


def strategy_fps(req: PickRequest) -> tuple[Picks, np.ndarray | None]:
    """farthest-point sampling on descriptors (coverage of the space)"""
    from omni_data.select.selection import distributed_pick, fps_rows, start_row

    cfg, cand = req.cfg, req.cand
    start = start_row(cfg.seed, len(cand))
    if cfg.mode == "exact":
        p = fps_rows(
            req.ds.vectors(cand),
            req.k,
            req.seeds,
            start,
            cfg.progress_every,
            engine=cfg.fps_engine,
            device=cfg.device,
            dtype=cfg.dtype,
        )
        return Picks(cand[p.rows], p.distance), None
    return distributed_pick(cfg, req.ds, cand, req.k, req.seeds, int(cand[start]), req.client), None


def strategy_error(req: PickRequest) -> tuple[Picks, np.ndarray | None]:
    """largest model error against the stored labels (needs --model)"""
    scores = _scores(req)
    p = pick_error(scores, req.k)
    return Picks(req.cand[p.rows], p.distance, p.score), scores


def strategy_hybrid(req: PickRequest) -> tuple[Picks, np.ndarray | None]:
    """farthest-point sampling among the largest-error structures (needs --model)"""
    from omni_data.select.selection import start_row

    scores = _scores(req)
    p = pick_hybrid(
        req.ds.vectors(req.cand), scores, req.k, req.cfg.pool, req.seeds, lambda sub: start_row(req.cfg.seed, len(sub))
    )
    return Picks(req.cand[p.rows], p.distance, p.score), scores


STRATEGIES: dict[str, Strategy] = {
    "fps": strategy_fps,
    "error": strategy_error,
    "hybrid": strategy_hybrid,
}
"""The one strategy table: name -> function (its docstring is the CLI help)."""

SCORED = frozenset({"error", "hybrid"})
"""Strategies that need a model scorer (--model)."""


def describe_strategies() -> str:
    """One line per strategy for ``--help``."""
    return "; ".join(f"{name}: {(fn.__doc__ or '').strip()}" for name, fn in STRATEGIES.items())
