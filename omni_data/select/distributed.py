"""Exact farthest-point sampling over shards held by workers, in rounds: the one-node picks.

Why it is exact: plain FPS picks the row farthest from the picks so far. Each shard (a
``ShardFPS``, a Dask actor on some worker for the whole selection) keeps its rows' float32
squared distance ``r`` to the picks, and each round it (1) applies the picks made since the
last round and (2) reports its ``top`` farthest rows (vectors, ``r``, global row) and the
order key of the next one, its *bound*: no row it did not report is farther. The client pools
the reported rows and picks from the pool, in FPS order, while the farthest pooled row beats
every shard's bound; each pick lowers the pool's distances. A pick made that way is the global
argmax (distances only ever decrease, and the pool holds every row above the bound), so the
picks, their distances and the tie rule are those of ``fps`` on all rows at once (tested
against the plain loop). The first pick of a round always qualifies, and as the radius shrinks
the far rows spread out, so a round makes many picks: tens of rounds for thousands of picks on
clustered data, where one round per pick would be the naive bound.

Work: every shard applies every pick with the one-node kernel's block pruning
(``_shard_numba.apply_picks``), so the core-seconds are those of exact FPS plus the shards'
per-round top-``top`` (O(rows) each) and the client's pool (``top`` rows per shard at most,
``|pool| * d`` per pick). Client memory: the pool (``shards * top`` rows of ``d`` float32) and
the picks; a worker holds its shards' vectors and one float32 per row.

``select-bridge --mode distributed`` uses it with a ``distributed.Client`` (``--workers``,
``--scheduler``, ``--slurm``); without one the shards are held in this process (same picks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omni_data.select.fps import _SLACK, _block_order, _super_blocks, check_points

__all__ = ["ShardSource", "DistributedResult", "ShardReport", "ShardFPS", "first_by_key", "distributed_fps"]


@dataclass(frozen=True)
class ShardSource:
    """One shard's descriptors: ``load()`` returns the (n, d) array (picklable: a partial)."""

    load: Callable[[], np.ndarray]
    offset: int  # global index of the shard's first row
    n: int  # rows that load() returns
    name: str = ""
    rows: np.ndarray | None = None  # global index of each loaded row (default offset + arange)
    tasks: np.ndarray | None = None  # task of each loaded row: the final step returns coverage per task

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
    """Global indices in pick order, squared distance at pick, and what the run cost."""

    indices: np.ndarray
    sqdist: np.ndarray
    rounds: int  # rounds of apply-and-report over the shards
    pooled: int  # rows the shards reported to the client, all rounds together
    task_cpu_seconds: float  # process time of all shards (loading, blocking, applying, reporting)
    computed: int  # point-pick distances the shards computed (plain FPS: N * k)
    task_stats: list[dict[str, tuple[int, float, float]]] | None = None  # per shard with tasks: coverage


NONE_LEFT = (-1.0, -1)
"""Bound of a shard that reported all its rows (below every real key)."""


@dataclass
class ShardReport:
    """One shard's answer in a round: its ``top`` farthest rows and the key of the next one."""

    rows: np.ndarray  # global row numbers
    vectors: np.ndarray  # (m, d) float32
    sqdist: np.ndarray  # (m,) float32 squared distance to the picks so far
    bound: tuple[float, int]  # (sqdist, row) of the farthest row not reported, or NONE_LEFT


def _beats(v: float, i: int, bv: float, bi: int, last: bool) -> bool:
    """The FPS tie rule (``_fps_numba._better``): does (v, i) come before (bv, bi)?"""
    return v > bv or (v == bv and (i > bi if last else i < bi))


class ShardFPS:
    """One shard's rows and their distance to the picks so far (lives on one worker).

    ``step(picks, top)`` applies new picks (vectors) and reports the farthest rows; ``vector``
    gives one row's vector (the start point).
    """

    def __init__(self, source: ShardSource, last: bool = True):
        from omni_data.select._fps_numba import block_balls

        t0 = time.process_time()
        x = check_points(source.load(), f"shard {source.name or source.offset}")
        if len(x) != source.n:
            raise ValueError(f"shard {source.name!r}: loaded {len(x)} rows, catalogue says {source.n}")
        order, self.bstart = _block_order(x, block=64)
        self.xs = np.ascontiguousarray(x[order])
        self.rows = np.asarray(source.global_rows(order), dtype=np.int64)
        self.bcen, self.brad, self.a = block_balls(self.xs, self.bstart)
        self.sstart, self.scen, self.srad = _super_blocks(self.bcen, self.brad, np.diff(self.bstart))
        owner = np.repeat(np.arange(len(self.srad)), np.diff(self.sstart))
        self.bsd = np.sqrt(((self.bcen - self.scen[owner]) ** 2).sum(axis=1))
        self.tasks = None if source.tasks is None else np.asarray(source.tasks)[order]
        self.r = np.full(len(x), np.inf, dtype=np.float32)
        self.owner = np.full(len(x), -1, dtype=np.int64)  # position in self.picks of each row's nearest pick
        self.picks = np.zeros((0, x.shape[1]), dtype=np.float32)  # every pick applied here, in order
        self.memo_key = np.zeros(0, dtype=np.int64)
        self.memo_val = np.zeros(0, dtype=np.float64)
        self.bmax = np.full(len(self.brad), np.inf, dtype=np.float32)
        self.smax = np.full(len(self.srad), np.inf, dtype=np.float32)
        self.last = last
        self.computed = 0
        self.cpu = time.process_time() - t0

    def vector(self, row: int) -> np.ndarray | None:
        """The vector of global ``row``, or None when this shard does not hold it."""
        hit = np.flatnonzero(self.rows == row)
        return self.xs[hit[0]].copy() if len(hit) else None

    def step(self, picks: np.ndarray, top: int) -> ShardReport:
        """Apply ``picks`` ((m, d) float32), then report the ``top`` farthest rows."""
        from omni_data.select._shard_numba import apply_picks

        t0 = time.process_time()
        picks = np.ascontiguousarray(picks, dtype=np.float32)
        if len(picks):
            first = len(self.picks)
            self.picks = np.concatenate([self.picks, picks])
            grow = len(self.picks) - len(self.memo_key)
            self.memo_key = np.concatenate([self.memo_key, np.full(grow, -1, dtype=np.int64)])
            self.memo_val = np.concatenate([self.memo_val, np.zeros(grow)])
            self.computed += apply_picks(
                self.xs,
                self.bstart,
                self.bcen,
                self.brad,
                self.a,
                self.sstart,
                self.scen,
                self.srad,
                self.bsd,
                self.r,
                self.owner,
                self.bmax,
                self.smax,
                self.picks,
                first,
                self.memo_key,
                self.memo_val,
                1.0 - _SLACK,
            )
        chosen, bound = self._farthest(top)
        self.cpu += time.process_time() - t0
        return ShardReport(self.rows[chosen], self.xs[chosen], self.r[chosen].copy(), bound)

    def finish(self, picks: np.ndarray) -> tuple[dict[str, tuple[int, float, float]] | None, float, int]:
        """Apply the last picks: (coverage ``task_stats`` when the rows have tasks, cpu, distances)."""
        from omni_data.select.coverage import task_stats

        self.step(picks, 0)
        stats = None if self.tasks is None else task_stats(np.sqrt(self.r.astype(np.float64)), self.tasks)
        return stats, self.cpu, self.computed

    def _farthest(self, top: int) -> tuple[np.ndarray, tuple[float, int]]:
        """Positions of the ``top`` rows first in FPS order and the key of the next one."""
        return first_by_key(self.r, self.rows, top, self.last)


def first_by_key(values: np.ndarray, rows: np.ndarray, top: int, last: bool) -> tuple[np.ndarray, tuple[float, int]]:
    """Positions of the ``top`` entries first in FPS order (largest value, then the tie rule on
    ``rows``) and the (value, row) key of the next one (``NONE_LEFT`` when none is left)."""
    n = len(values)
    if top == 0:
        return np.zeros(0, dtype=np.int64), NONE_LEFT
    if n <= top:
        return np.arange(n), NONE_LEFT
    v = np.partition(values, n - top - 1)[n - top - 1]  # the (top + 1)-th largest value
    above = np.flatnonzero(values > v)
    tied = np.flatnonzero(values == v)
    order = np.argsort(rows[tied], kind="stable")
    tied = tied[order[::-1]] if last else tied[order]
    take = top - len(above)
    nxt = tied[take]
    return np.concatenate([above, tied[:take]]), (float(values[nxt]), int(rows[nxt]))


@dataclass(frozen=True)
class _Done:
    """A value already computed, read like a Dask actor call's future."""

    value: Any

    def result(self) -> Any:
        return self.value


class _Local:
    """A ``ShardFPS`` held in this process, called like a Dask actor (``.result()`` on each)."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __getattr__(self, name: str) -> Callable[..., _Done]:
        fn = getattr(self.obj, name)
        return lambda *a, **kw: _Done(fn(*a, **kw))


def _shards(sources: Sequence[ShardSource], last: bool, client: Any) -> list[Any]:
    """One ``ShardFPS`` per source: Dask actors spread over the client's workers, or local."""
    if client is None:
        return [_Local(ShardFPS(s, last)) for s in sources]
    futures = [client.submit(ShardFPS, s, last, actor=True, pure=False) for s in sources]
    return [f.result() for f in futures]


def distributed_fps(
    sources: Sequence[ShardSource],
    k: int,
    start: int | None = 0,
    seeds: np.ndarray | None = None,
    client: Any = None,
    top: int = 2048,
    ties: str = "last",
    log: Callable[[str], None] | None = None,
    pool_rows: int = 8192,
) -> DistributedResult:
    """Pick ``k`` global rows exactly as ``fps`` on all rows would (see the module docstring).

    ``seeds``: vectors selected before (applied first, not picked again; FPS continues from
    them); ``start``: global row picked first when there are no seeds. ``client``: a
    ``distributed.Client`` whose workers hold the shards (None: this process). ``top``: rows
    each shard reports per round; ``pool_rows``: the client keeps at most this many of them
    (the first in FPS order; the next one bounds the rest). ``log``: a line per round about
    every 5 s (picks, radius).
    When every source has ``tasks``, ``task_stats`` holds each shard's coverage (rows, max and
    sum of the distance to picks + seeds per task): the final distances, no second pass.
    """
    if ties not in ("last", "first"):
        raise ValueError(f"ties must be 'last' or 'first', got {ties!r}")
    last = ties == "last"
    n_total = sum(s.n for s in sources)
    if not 0 < k <= n_total:
        raise ValueError(f"need 0 < k <= {n_total} points, got k={k}")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    t0 = time.monotonic()
    shards = _shards(sources, last, client)
    picks: list[int] = []
    dists: list[float] = []
    if seeds is not None and len(seeds):
        new = np.ascontiguousarray(seeds, dtype=np.float32)
    else:
        if start is None:
            raise ValueError("give a start row or seeds")
        found = [v for v in (s.vector(int(start)).result() for s in shards) if v is not None]
        if not found:
            raise ValueError(f"start row {start} is in none of the shards")
        new = found[0][None, :]
        picks.append(int(start))
        dists.append(float("inf"))
    rounds, pooled, said = 0, 0, t0
    while len(picks) < k:
        reports = [f.result() for f in [s.step(new, top) for s in shards]]
        rounds += 1
        bound = NONE_LEFT
        for rep in reports:
            if _beats(rep.bound[0], rep.bound[1], bound[0], bound[1], last):
                bound = rep.bound
        rows = np.concatenate([rep.rows for rep in reports])
        vec = np.concatenate([rep.vectors for rep in reports])
        pr = np.concatenate([rep.sqdist for rep in reports])
        taken = np.isin(rows, np.asarray(picks, dtype=np.int64))  # picked rows stay reported at r = 0
        pr[taken] = -1.0
        pooled += len(rows)
        if len(rows) > pool_rows:  # keep the pool's first rows; the next one bounds the rest
            keep, cut = first_by_key(pr, rows, pool_rows, last)
            rows, vec, pr = rows[keep], vec[keep], pr[keep]
            if _beats(cut[0], cut[1], bound[0], bound[1], last):
                bound = cut
        made = _pick_from_pool(rows, vec, pr, bound, k - len(picks), last)
        if not made:
            raise RuntimeError("exact distributed FPS made no pick in a round (a shard's bound is wrong)")
        picks += [int(rows[j]) for j, _ in made]
        dists += [d for _, d in made]
        new = vec[[j for j, _ in made]]
        if log is not None and (time.monotonic() - said >= 5.0 or len(picks) >= k):
            said = time.monotonic()
            log(
                f"exact distributed FPS: round {rounds}, {len(picks):,}/{k:,} picks, "
                f"radius {np.sqrt(max(dists[-1], 0.0)):.6g}, elapsed {said - t0:.1f} s"
            )
    final = [f.result() for f in [s.finish(new) for s in shards]]
    stats = [f[0] for f in final]
    return DistributedResult(
        indices=np.asarray(picks[:k], dtype=np.int64),
        sqdist=np.asarray(dists[:k], dtype=np.float32),
        rounds=rounds,
        pooled=pooled,
        task_cpu_seconds=float(sum(f[1] for f in final)),
        computed=int(sum(f[2] for f in final)),
        task_stats=None if any(st is None for st in stats) else [st for st in stats if st is not None],
    )


def _pick_from_pool(
    rows: np.ndarray, vec: np.ndarray, pr: np.ndarray, bound: tuple[float, int], most: int, last: bool
) -> list[tuple[int, float]]:
    """FPS inside the pool while its farthest row beats ``bound``: (pool position, sqdist) each."""
    from omni_data.select._shard_numba import lower_pool

    floor = max(bound[0], 0.0)  # a row below the bound cannot be picked this round
    live = np.flatnonzero(pr >= floor)
    if len(live) == 0:
        return []
    rows, vec, pr, pos = rows[live], np.ascontiguousarray(vec[live]), pr[live].copy(), live
    made: list[tuple[int, float]] = []
    while len(made) < most:
        v = pr.max()
        if v < 0:
            break
        tied = np.flatnonzero(pr == v)
        j = int(tied[np.argmax(rows[tied])] if last else tied[np.argmin(rows[tied])])
        if not _beats(float(v), int(rows[j]), bound[0], bound[1], last):
            break
        made.append((int(pos[j]), float(v)))
        lower_pool(vec, pr, vec[j].copy(), np.float32(floor))
        pr[j] = -1.0
    return made


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
