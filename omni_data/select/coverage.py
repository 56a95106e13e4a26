"""How well a selection covers the descriptor space: covering radius overall and per task.

The covering radius of a selection S is ``max_x min_{s in S} |x - s|``: no structure is farther
than that from a selected one. FPS is a 2-approximation of the smallest possible radius for
|S| points, so this is the number to watch when comparing exact and distributed selection.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def nearest_sqdist(x: np.ndarray, picks: np.ndarray, block: int = 16384) -> np.ndarray:
    """Squared distance (float64) of each row of ``x`` to its nearest row of ``picks``.

    ``|x|^2 + |p|^2 - 2 x.p`` in float64 blocks (BLAS), clipped at 0: a few ulps of rounding
    are irrelevant for a radius, and this is ~50x faster than explicit differences.
    """
    p = np.asarray(picks, dtype=np.float64)
    if len(p) == 0:
        return np.full(len(x), np.inf)
    p2 = (p * p).sum(axis=1)
    out = np.empty(len(x))
    for lo in range(0, len(x), block):
        b = np.asarray(x[lo : lo + block], dtype=np.float64)
        d2 = (b * b).sum(axis=1)[:, None] + p2[None, :] - 2.0 * (b @ p.T)
        out[lo : lo + block] = np.maximum(d2.min(axis=1), 0.0)
    return out


@dataclass
class TaskCoverage:
    """Coverage of one task's structures."""

    n: int
    picks: int
    covering_radius: float
    mean_distance: float


@dataclass
class CoverageReport:
    """What select-bridge writes next to selection.parquet (coverage.json / coverage.txt)."""

    n_points: int
    n_picked: int
    n_seeds: int
    covering_radius: float
    mean_distance: float
    tasks: dict[str, TaskCoverage]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def to_text(self) -> str:
        lines = [
            f"points {self.n_points}  picked {self.n_picked}  seeds {self.n_seeds}",
            f"covering radius {self.covering_radius:.6g}  mean distance to selection "
            f"{self.mean_distance:.6g}",
            f"{'task':<24}{'points':>10}{'picks':>8}{'radius':>12}{'mean':>12}",
        ]
        for name, t in sorted(self.tasks.items()):
            lines.append(f"{name:<24}{t.n:>10}{t.picks:>8}{t.covering_radius:>12.6g}"
                         f"{t.mean_distance:>12.6g}")
        lines += [f"{k}: {v}" for k, v in sorted(self.settings.items())]
        return "\n".join(lines) + "\n"


def coverage_report(x: np.ndarray, tasks: np.ndarray, picked: np.ndarray,
                    seeds: np.ndarray | None = None, settings: dict[str, Any] | None = None
                    ) -> CoverageReport:
    """Covering radius of ``picked`` rows (plus ``seeds`` vectors) over all rows and per task."""
    centres = np.asarray(x[np.asarray(picked, dtype=np.int64)], dtype=np.float64)
    n_seeds = 0 if seeds is None else len(seeds)
    if n_seeds:
        centres = np.concatenate([centres, np.asarray(seeds, dtype=np.float64)])
    dist = np.sqrt(nearest_sqdist(x, centres))
    tasks = np.asarray(tasks).astype(str)
    picked_tasks = tasks[np.asarray(picked, dtype=np.int64)]
    per_task = {}
    for name in np.unique(tasks):
        mask = tasks == name
        per_task[str(name)] = TaskCoverage(
            n=int(mask.sum()), picks=int((picked_tasks == name).sum()),
            covering_radius=float(dist[mask].max()), mean_distance=float(dist[mask].mean()))
    return CoverageReport(
        n_points=len(x), n_picked=len(picked), n_seeds=n_seeds,
        covering_radius=float(dist.max()) if len(dist) else 0.0,
        mean_distance=float(dist.mean()) if len(dist) else 0.0,
        tasks=per_task, settings=dict(settings or {}))
