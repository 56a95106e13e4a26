"""Farthest-point sampling over many shards with Dask: local FPS per shard, then global FPS.

Each shard (one Dask task, which loads its own descriptors) runs exact FPS seeded with the
already-selected points and the global start point, and keeps ``ceil(oversample * k * n_s / N)``
candidates (at least ``min_local``). The union of candidates then goes through one global
exact FPS with the same seeds and start. Every point not kept is within its shard's local
covering radius of a kept candidate, so the final covering radius is at most the global one on
the candidates plus the largest local radius. Refinement rounds (up to 3) shrink that margin:
every shard that may hold a point farther than the global radius ``r`` from the picks (local
radius + the largest distance of its local picks to the selection > ``r``) reruns its local
FPS, which bounds every point by ``delta + D`` (its distance to its local pick, that pick's
distance to the selection); only the points whose bound exceeds ``r`` are measured (FPS seeded
with the selection over those points alone), those beyond ``r`` are sent (farthest first, at
most the shard's quota), and the global FPS reruns on the enlarged union.

Client memory: the candidates' vectors (at most ``(1 + refine) * sum(quotas)`` rows, about
``(1 + refine) * oversample * k`` rows of ``d`` float32) plus the picks; never the shards' points.
``omni-data select-bridge --mode distributed`` and ``benchmarks/fps.py --dist-n`` use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omni_data.select.fps import check_points, fps

__all__ = [
    "ShardSource",
    "DistributedResult",
    "local_quota",
    "local_candidates",
    "distributed_fps",
    "outliers",
    "nearest_sqdist_matrix",
]


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
    task_cpu_seconds: float = 0.0  # process time summed over all Dask tasks (core-seconds)
    checked: int = 0  # shard points whose distance to the picks refinement had to measure


def local_quota(n_shard: int, n_total: int, k: int, oversample: float, min_local: int) -> int:
    """Candidates a shard keeps: its share of ``oversample * k``, at least ``min_local``."""
    share = math.ceil(oversample * k * n_shard / max(n_total, 1))
    return int(min(n_shard, max(share, min_local)))


def _load(source: ShardSource) -> np.ndarray:
    x = check_points(source.load(), f"shard {source.name or source.offset}")
    if len(x) != source.n:
        raise ValueError(f"shard {source.name!r}: loaded {len(x)} rows, catalogue says {source.n}")
    return x


def _local_fps(x: np.ndarray, quota: int, seeds: np.ndarray, threads: int):
    """FPS inside one shard seeded with ``seeds``, every pick applied (``mind``, ``owner`` set)."""
    m = len(seeds)
    both = np.concatenate([seeds.astype(np.float32), x]) if m else x
    return fps(both, m + min(quota, len(x)), start_idx=list(range(m)) if m else 0, threads=threads, return_mind=True)


def local_candidates(
    source: ShardSource, quota: int, seeds: np.ndarray, threads: int = 1
) -> tuple[np.ndarray, np.ndarray, float]:
    """FPS inside one shard seeded with ``seeds`` (rows, not picked again).

    Returns global indices of the ``quota`` candidates, their vectors, and the local covering
    radius (distance of the farthest shard point from seeds + candidates).
    """
    x = _load(source)
    m = len(seeds)
    res = _local_fps(x, quota, seeds, threads)
    rows = res.indices[m:] - m
    radius = float(np.sqrt(res.mind[m:].max())) if len(rows) < len(x) else 0.0
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
    refine: int = 0,
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
    timed = _compute(
        [dask.delayed(_timed)(local_candidates, s, q, d_seeds) for s, q in zip(sources, quotas)], scheduler, num_workers
    )
    cpu = sum(t[1] for t in timed)
    parts = [t[0] for t in timed]
    idx = np.concatenate([p[0] for p in parts])
    vec = np.concatenate([p[1] for p in parts])
    say(f"local round on {len(sources)} shards: {len(idx):,} candidates, task cpu {cpu:.1f} s")
    res, idx, vec = _global(idx, vec, first, d_seeds, k)
    say(f"global FPS: {k:,} picks, radius {res.radius:.6g}")
    radius = {s.name or str(s.offset): p[2] for s, p in zip(sources, parts)}
    checked = 0
    for round_no in range(1, refine + 1):
        # shards whose points may lie farther than the global radius send their outliers
        r_glob = res.radius
        chosen = dask.delayed(np.concatenate([d_seeds, res.vectors]), pure=True)
        # a shard point is within its local radius of a local pick, which is within D of the
        # selection: shards with local radius + max D <= r_glob cannot hold a point beyond it
        dists = [_pick_distances(res, idx, p[0], len(d_seeds)) for p in parts]
        todo = [
            (s, q, dd)
            for s, q, p, dd in zip(sources, quotas, parts, dists)
            if (p[2] + dd.max()) * (1.0 + 1e-3) > r_glob
        ]
        timed = _compute(
            [dask.delayed(_timed)(outliers, s, q, d_seeds, q, chosen, dd, r_glob) for s, q, dd in todo],
            scheduler,
            num_workers,
        )
        round_cpu = sum(t[1] for t in timed)
        cpu += round_cpu
        extra = [t[0] for t in timed]
        checked += sum(e[2] for e in extra)
        sent = sum(len(e[0]) for e in extra)
        if not sent:
            say(f"refinement {round_no}: no shard has points beyond radius {r_glob:.6g}; done")
            break
        idx = np.concatenate([idx] + [e[0] for e in extra])
        vec = np.concatenate([vec] + [e[1] for e in extra])
        res, idx, vec = _global(idx, vec, first, d_seeds, k)
        say(
            f"refinement {round_no}: {len(todo)} shards checked {sum(e[2] for e in extra):,} points, "
            f"sent {sent:,}, {len(idx):,} candidates, radius {res.radius:.6g}, task cpu {round_cpu:.1f} s"
        )
    return DistributedResult(res.indices, res.sqdist, len(idx), radius, cpu, checked)


@dataclass
class _Global:
    indices: np.ndarray  # k global rows in pick order
    sqdist: np.ndarray  # k squared distances at pick (inf for the start row)
    vectors: np.ndarray  # the picks' vectors (start row excluded: it is a seed row)
    mind: np.ndarray  # squared distance of every candidate (``idx`` order) to seeds + picks
    radius: float  # covering radius of seeds + picks over the candidates


def _global(
    idx: np.ndarray, vec: np.ndarray, first: np.ndarray, seeds: np.ndarray, k: int
) -> tuple[_Global, np.ndarray, np.ndarray]:
    """Exact FPS over the candidate union, seeded like the local runs (all picks applied)."""
    idx, uniq = np.unique(idx, return_index=True)
    vec = vec[uniq]
    keep = ~np.isin(idx, first)  # the start point is a seed row already
    idx, vec = idx[keep], vec[keep]
    m = len(seeds)
    n_new = k - len(first)
    if n_new > len(idx):
        raise ValueError(f"only {len(idx)} candidates for {n_new} picks: raise oversample")
    res = fps(np.concatenate([seeds, vec]), m + n_new, start_idx=list(range(m)), return_mind=True)
    rows = res.indices[m:] - m
    picked = np.concatenate([first, idx[rows]]).astype(np.int64)
    sq = np.concatenate([np.full(len(first), np.inf, np.float32), res.sqdist[m:]])
    assert res.mind is not None  # asked for with return_mind
    mind = res.mind[m:]
    radius = float(np.sqrt(mind.max())) if len(mind) else 0.0
    return _Global(picked, sq, vec[rows], mind, radius), idx, vec


def _pick_distances(res: _Global, idx: np.ndarray, local_rows: np.ndarray, n_seeds: int) -> np.ndarray:
    """Distance to the global selection of each local pick of one shard (seeds first: 0).

    A local candidate not among ``idx`` is the start row, which is picked: 0 as well."""
    j = np.clip(np.searchsorted(idx, local_rows), 0, max(len(idx) - 1, 0))
    found = idx[j] == local_rows if len(idx) else np.zeros(len(local_rows), bool)
    d = np.where(found, np.sqrt(res.mind[j].astype(np.float64)), 0.0)
    return np.concatenate([np.zeros(n_seeds), d])


def outliers(
    source: ShardSource,
    quota: int,
    seeds: np.ndarray,
    cap: int,
    chosen: np.ndarray,
    pick_dist: np.ndarray,
    radius: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Up to ``cap`` shard points farther than ``radius`` from ``chosen``, farthest first.

    The local FPS (same seeds and quota as the local round, so the same picks) gives every
    point its distance ``delta`` to its local pick ``t``; ``pick_dist[t]`` is that pick's
    distance to ``chosen``. A point with ``delta + pick_dist[t] <= radius`` (triangle
    inequality, 1e-3 slack) cannot be farther than ``radius``. For the others ("in doubt"),
    only the picks within ``rho_t + radius`` of their local pick (``rho_t``: the largest
    ``delta`` in doubt in that cell) can be within ``radius``; a point with none of them that
    close is sent: FPS among those points starting from their distance to ``chosen``, while the
    farthest is beyond ``radius``. No FPS seeded with all of ``chosen`` runs, so the cost is
    the local FPS plus the points in doubt, not ``k`` seed picks per shard.
    Returns (global rows, vectors, points in doubt).
    """
    from omni_data.select.coverage import nearest_sqdist

    x = _load(source)
    m = len(seeds)
    local = _local_fps(x, quota, seeds, threads=1)
    delta = np.sqrt(local.mind[m:].astype(np.float64))
    owner = local.owner[m:]
    doubt = np.flatnonzero((delta + pick_dist[owner]) * (1.0 + 1e-3) > radius)
    none = (np.zeros(0, np.int64), np.zeros((0, x.shape[1]), np.float32), len(doubt))
    if len(doubt) == 0:
        return none
    chosen = np.asarray(chosen, np.float32)
    local_vec = np.concatenate([seeds.astype(np.float32).reshape(m, -1), x[local.indices[m:] - m]])
    cells, inv = np.unique(owner[doubt], return_inverse=True)
    rho = np.zeros(len(cells))
    np.maximum.at(rho, inv, delta[doubt])
    reach = (rho + radius) * (1.0 + 1e-3)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(cells) + 1))
    near = np.empty(len(doubt))
    for lo in range(0, len(cells), 64):
        hi = min(len(cells), lo + 64)
        d2 = nearest_sqdist_matrix(local_vec[cells[lo:hi]], chosen)
        for j in range(lo, hi):
            members = order[bounds[j] : bounds[j + 1]]
            close = np.flatnonzero(d2[j - lo] <= reach[j] * reach[j])
            near[members] = nearest_sqdist(x[doubt[members]], chosen[close]) if len(close) else np.inf
    far = doubt[near > radius * radius]
    if len(far) == 0:
        return none
    r = nearest_sqdist(x[far], chosen)  # exact (float64) distance of the few far points
    rows = _fps_from(x[far], r, cap, radius * radius)
    return source.global_rows(far[rows]), x[far[rows]], len(doubt)


def nearest_sqdist_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared distances in float64 (BLAS), clipped at 0."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    d2 = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2.0 * (a64 @ b64.T)
    return np.maximum(d2, 0.0)


def _fps_from(x: np.ndarray, r: np.ndarray, cap: int, floor: float) -> np.ndarray:
    """Farthest-first picks among ``x`` given each row's squared distance ``r`` to earlier picks,
    while the farthest is beyond ``floor`` (ties: the last index, as the exact kernel)."""
    r = np.asarray(r, np.float64).copy()
    x64 = x.astype(np.float64)
    out: list[int] = []
    for _ in range(min(cap, len(x))):
        i = len(r) - 1 - int(np.argmax(r[::-1]))
        if r[i] <= floor:
            break
        out.append(i)
        diff = x64 - x64[i]
        np.minimum(r, (diff * diff).sum(1), out=r)
    return np.asarray(out, dtype=np.int64)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and the process time it took (the task's core-seconds)."""
    import time

    t0 = time.process_time()
    out = fn(*args)
    return out, time.process_time() - t0


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
