"""Farthest-point sampling over many shards with Dask: local FPS per shard, then global FPS.

Each shard (one Dask task, which loads its own descriptors) runs exact FPS seeded with the
already-selected points and the global start point, and keeps ``ceil(oversample * k * n_s / N)``
candidates (at least ``min_local``). The union of candidates then goes through one global
exact FPS with the same seeds and start. Every point not kept is within its shard's local
covering radius of a kept candidate, so the final covering radius is at most the global one on
the candidates plus the largest local radius. Refinement rounds (up to 3) shrink that margin:
shards whose local radius exceeds the global one send their points still farther than the
global radius from the picks, and the global FPS reruns on the enlarged union.
``omni-data select-bridge --mode distributed`` and ``benchmarks/fps.py --dist-n`` use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from omni_data.select.fps import check_points, fps


@dataclass(frozen=True)
class ShardSource:
    """One shard's descriptors: ``load()`` returns the (n, d) array (picklable: a partial)."""

    load: Callable[[], np.ndarray]
    offset: int  # global index of the shard's first row
    n: int  # rows that load() returns
    name: str = ""
    rows: np.ndarray | None = None  # global index of each loaded row (default offset + arange)

    def global_rows(self, local: np.ndarray) -> np.ndarray:
        return self.offset + local if self.rows is None else self.rows[local]

    def local_row(self, row: int) -> int | None:
        """Position of global ``row`` among the loaded rows, or None."""
        if self.rows is None:
            return row - self.offset if self.offset <= row < self.offset + self.n else None
        j = int(np.searchsorted(self.rows, row))
        return j if j < len(self.rows) and self.rows[j] == row else None


@dataclass
class DistributedResult:
    """Global indices in pick order, squared distance at pick (among candidates), bookkeeping."""

    indices: np.ndarray
    sqdist: np.ndarray
    n_candidates: int
    local_radius: dict[str, float] = field(default_factory=dict)


def local_quota(n_shard: int, n_total: int, k: int, oversample: float, min_local: int) -> int:
    """Candidates a shard keeps: its share of ``oversample * k``, at least ``min_local``."""
    share = math.ceil(oversample * k * n_shard / max(n_total, 1))
    return int(min(n_shard, max(share, min_local)))


def local_candidates(source: ShardSource, quota: int, seeds: np.ndarray, threads: int = 1
                     ) -> tuple[np.ndarray, np.ndarray, float]:
    """FPS inside one shard seeded with ``seeds`` (rows, not picked again).

    Returns global indices of the ``quota`` candidates, their vectors, and the local covering
    radius (distance of the farthest shard point from seeds + candidates).
    """
    x = check_points(source.load(), f"shard {source.name or source.offset}")
    if len(x) != source.n:
        raise ValueError(f"shard {source.name!r}: loaded {len(x)} rows, catalogue says {source.n}")
    quota = min(quota, len(x))
    m = len(seeds)
    both = np.concatenate([seeds.astype(np.float32), x]) if m else x
    # one pick more than kept: its distance at selection is the covering radius of the rest
    extra = 1 if quota < len(x) else 0
    res = fps(both, m + quota + extra, start_idx=list(range(m)) if m else 0, threads=threads)
    rows = res.indices[m : m + quota] - m
    radius = float(np.sqrt(res.sqdist[-1])) if extra else 0.0
    return source.global_rows(rows), x[rows], radius


def distributed_fps(
    sources: Sequence[ShardSource],
    k: int,
    start: int | None = 0,
    seeds: np.ndarray | None = None,
    oversample: float = 3.0,
    min_local: int = 8,
    scheduler: Any = "processes",
    num_workers: int | None = None,
    refine: int = 3,
    log: Callable[[str], None] | None = None,
) -> DistributedResult:
    """Pick ``k`` global indices: local FPS per shard (Dask), then global FPS on the union.

    ``seeds``: vectors of points selected before (not re-picked; FPS continues from them);
    ``start``: global index picked first when there are no seeds (same rule as exact FPS).
    ``scheduler``: a dask scheduler name ("processes", "threads", "sync") or a
    ``distributed.Client``. ``refine``: at most this many rounds in which shards whose local
    radius exceeds the global one send their points farther than it (then global FPS again);
    stops early when no shard has any. ``log``: called with one line after each stage (local
    round, global FPS, each refinement round): candidates, current radius, elapsed seconds.
    """
    import time

    import dask

    t0 = time.monotonic()

    def say(text: str) -> None:
        if log is not None:
            log(f"distributed FPS: {text}  elapsed {time.monotonic() - t0:.1f} s")

    n_total = sum(s.n for s in sources)
    if not 0 < k <= n_total:
        raise ValueError(f"need 0 < k <= {n_total} points, got k={k}")
    d_seeds = np.zeros((0, 0), np.float32) if seeds is None else np.asarray(seeds, np.float32)
    if len(d_seeds) == 0:
        if start is None:
            raise ValueError("give a start row or seeds")
        owner = next((s for s in sources if s.local_row(start) is not None), None)
        if owner is None:
            raise ValueError(f"start row {start} is in none of the shards")
        d_seeds = check_points(owner.load())[owner.local_row(start)][None, :]
        first = np.array([start])
    else:
        first = np.zeros(0, dtype=np.int64)
    quotas = [local_quota(s.n, n_total, k, oversample, min_local) for s in sources]
    parts = _compute([dask.delayed(local_candidates)(s, q, d_seeds)
                      for s, q in zip(sources, quotas)], scheduler, num_workers)
    idx = np.concatenate([p[0] for p in parts])
    vec = np.concatenate([p[1] for p in parts])
    say(f"local round on {len(sources)} shards: {len(idx):,} candidates")
    res, idx, vec = _global(idx, vec, first, d_seeds, k)
    say(f"global FPS: {k:,} picks, radius {_radius(res, k):.6g}")
    radius = {s.name or str(s.offset): p[2] for s, p in zip(sources, parts)}
    for round_no in range(1, refine + 1):
        # shards whose points may lie farther than the global radius send their outliers
        r_glob = float(np.sqrt(res.sqdist[-1])) if len(res.sqdist) > k else 0.0
        chosen = np.concatenate([d_seeds, res.vectors])
        todo = [(s, q) for s, q in zip(sources, quotas) if radius[s.name or str(s.offset)] > r_glob]
        extra = _compute([dask.delayed(outliers)(s, q, chosen, r_glob) for s, q in todo],
                         scheduler, num_workers)
        sent = sum(len(e[0]) for e in extra)
        if not sent:
            say(f"refinement {round_no}: no shard has points beyond radius {r_glob:.6g}; done")
            break
        idx = np.concatenate([idx] + [e[0] for e in extra])
        vec = np.concatenate([vec] + [e[1] for e in extra])
        res, idx, vec = _global(idx, vec, first, d_seeds, k)
        say(f"refinement {round_no}: {len(todo)} shards sent {sent:,} points, "
            f"{len(idx):,} candidates, radius {_radius(res, k):.6g}")
    return DistributedResult(res.indices, res.sqdist[:k], len(idx), radius)


@dataclass
class _Global:
    indices: np.ndarray
    sqdist: np.ndarray  # k entries, plus one more: the covering radius of the candidates
    vectors: np.ndarray


def _radius(res: "_Global", k: int) -> float:
    """Covering radius of the picks over the candidates (0 when every candidate is picked)."""
    return float(np.sqrt(res.sqdist[-1])) if len(res.sqdist) > k else 0.0


def _global(idx: np.ndarray, vec: np.ndarray, first: np.ndarray, seeds: np.ndarray, k: int
            ) -> tuple[_Global, np.ndarray, np.ndarray]:
    """Exact FPS over the candidate union, seeded like the local runs."""
    idx, uniq = np.unique(idx, return_index=True)
    vec = vec[uniq]
    keep = ~np.isin(idx, first)  # the start point is a seed row already
    idx, vec = idx[keep], vec[keep]
    m = len(seeds)
    n_new = k - len(first)
    if n_new > len(idx):
        raise ValueError(f"only {len(idx)} candidates for {n_new} picks: raise oversample")
    extra = 1 if n_new < len(idx) else 0
    res = fps(np.concatenate([seeds, vec]), m + n_new + extra, start_idx=list(range(m)))
    rows = res.indices[m:] - m
    picked = np.concatenate([first, idx[rows[:n_new]]]).astype(np.int64)
    sq = np.concatenate([np.full(len(first), np.inf, np.float32), res.sqdist[m:]])
    vectors = vec[rows[:n_new]]
    return _Global(picked, sq, vectors), idx, vec


def outliers(source: ShardSource, cap: int, chosen: np.ndarray, radius: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``cap`` shard points farther than ``radius`` from ``chosen``, farthest first."""
    x = check_points(source.load(), f"shard {source.name or source.offset}")
    m = len(chosen)
    cap = min(cap, len(x))
    res = fps(np.concatenate([chosen.astype(np.float32), x]), m + cap, start_idx=list(range(m)),
              threads=1)
    far = res.sqdist[m:].astype(np.float64) > radius * radius
    rows = res.indices[m:][far] - m
    return source.global_rows(rows), x[rows]


def _compute(tasks: list[Any], scheduler: Any, num_workers: int | None) -> list[Any]:
    """Run Dask delayed tasks on a named scheduler or a ``distributed.Client``."""
    import dask

    if not tasks:
        return []
    if isinstance(scheduler, str):
        kwargs: dict[str, Any] = {"scheduler": scheduler}
        if num_workers:
            kwargs["num_workers"] = num_workers
        return list(dask.compute(*tasks, **kwargs))
    return list(scheduler.gather(scheduler.compute(tasks)))
