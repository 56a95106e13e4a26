"""Exact farthest-point sampling, fast: the same picks as the plain loop, far fewer distances.

Why it is exact: the plain loop (``_fps_reference.fps_reference``, itself bit-identical to
``fpsample.fps_sampling``) keeps, for every point, the float32 squared distance ``r`` to the
nearest pick and picks the argmax. A new pick ``c`` can only lower ``r`` of a point ``x`` when
``d(x, c) < sqrt(r)``. The triangle inequality gives cheap lower bounds on ``d(x, c)``:
``d(c, s) - d(x, s)`` for the pick ``s`` nearest to ``x`` (Gonzalez' Voronoi cells), and
``|d(c, m) - d(x, m)|`` / ``d(c, m) - R`` for a ball (centre ``m``, radius ``R``) holding ``x``.
Points (or whole blocks) whose bound already reaches ``sqrt(r)`` are skipped. The bounds carry
a relative slack far above float32 rounding and the distances that *are* computed use the
reference arithmetic, so every ``r`` equals the reference value bit for bit and the argmax
(same tie rule) picks the same index.

Engines: "numba" (``_fps_numba.py``: kd-ordered blocks with balls, parallel over blocks) and
"numpy" (explicit Voronoi cells with numpy batches, two threads; slower, no compiler).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from omni_data.select._fps_reference import sqdist_to, starts_list

# Relative slack on the pruning tests. float32 squared distances over d terms carry a relative
# error below (d + 2) * 2**-24 (all terms are non-negative); 1e-3 covers d up to ~16000.
_SLACK = 1e-3
_PAR_MIN = 65536  # rows below which one thread is faster than two


@dataclass
class FPSResult:
    """Picked indices in pick order and the squared distance (float32) each had when picked."""

    indices: np.ndarray
    sqdist: np.ndarray
    distances_computed: int  # point-center distances evaluated (the plain loop does N*k)

    @property
    def distances(self) -> np.ndarray:
        """Euclidean distance at selection (inf for the first start point)."""
        return np.sqrt(self.sqdist.astype(np.float64))


def check_points(x: np.ndarray, name: str = "points") -> np.ndarray:
    """float32 C-contiguous (n, d) array with finite values, or ValueError naming the first bad row."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty (n, d) array, got shape {x.shape}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise ValueError(f"{name}: row {int(np.flatnonzero(~finite)[0])} has non-finite values")
    return x


class _Distances:
    """Reference-arithmetic distances from gathered rows to one center, on up to two threads."""

    def __init__(self, x: np.ndarray, threads: int) -> None:
        self.x = x
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.threads = threads
        self.count = 0

    def _one(self, idx: np.ndarray, c: np.ndarray) -> np.ndarray:
        return sqdist_to(np.ascontiguousarray(self.x[idx].T), c)

    def __call__(self, idx: np.ndarray, c: np.ndarray) -> np.ndarray:
        self.count += len(idx)
        if self.pool is None or len(idx) < _PAR_MIN:
            return self._one(idx, c)
        parts = np.array_split(idx, self.threads)
        return np.concatenate(list(self.pool.map(lambda p: self._one(p, c), parts)))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _cell_top(r_members: np.ndarray, members: np.ndarray, last: bool) -> tuple[float, int]:
    """Max of ``r`` over a cell (members sorted ascending) and its index under the tie rule."""
    if len(members) == 0:
        return -1.0, -1
    if last:
        j = len(r_members) - 1 - int(np.argmax(r_members[::-1]))
    else:
        j = int(np.argmax(r_members))
    return float(r_members[j]), int(members[j])


def fps(
    x: np.ndarray,
    k: int,
    start_idx: int | Sequence[int] = 0,
    ties: str = "last",
    threads: int | None = None,
    engine: str = "auto",
) -> FPSResult:
    """Pick ``k`` points by farthest-point sampling; identical to ``fps_reference``.

    ``start_idx``: one index, or a list taken first in order (as fpsample); ``ties``: "last"
    (fpsample's ``>=`` rule) or "first" (numpy argmax). ``engine``: "numba" (compiled kernel,
    all cores), "numpy" (cell-pruned numpy, same picks, slower), "auto" (numba if installed).
    ``threads``: worker threads (default: all cores for numba, 2 for numpy).
    """
    if ties not in ("last", "first"):
        raise ValueError(f"ties must be 'last' or 'first', got {ties!r}")
    x = check_points(x)
    n = len(x)
    starts = starts_list(start_idx, n)
    if not len(starts) <= k <= n:
        raise ValueError(f"need len(start_idx) <= k <= n, got {len(starts)}, {k}, {n}")
    if engine == "auto":
        engine = "numba" if _have_numba() else "numpy"
    if engine == "numba":
        return _fps_numba(x, k, starts, ties == "last", threads)
    if engine != "numpy":
        raise ValueError(f"engine must be 'auto', 'numba' or 'numpy', got {engine!r}")
    return _fps_numpy(x, k, starts, ties == "last", threads or 2)


def _have_numba() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def _pca_sketch(x: np.ndarray, dims: int, rng: np.random.Generator, basis_only: bool = False
                ) -> np.ndarray:
    """Rows of ``x`` on their ``dims`` leading principal axes (float32), or just the axes."""
    n, d = x.shape
    sample = x[rng.choice(n, min(n, 4096), replace=False)].astype(np.float64)
    _, vecs = np.linalg.eigh(np.cov(sample, rowvar=False).reshape(d, d))
    w = np.ascontiguousarray(vecs[:, ::-1][:, : min(dims, d)], dtype=np.float32)
    return w if basis_only else (x - sample.mean(axis=0).astype(np.float32)) @ w


def _block_order(x: np.ndarray, block: int = 128, sketch: int = 16, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Row order putting nearby points in consecutive blocks, and the block boundaries.

    A kd-tree (median split on the widest coordinate) on a PCA sketch of the points, down to
    blocks of <= ``block`` rows. Only speed depends on this order, never the picks.
    """
    from omni_data.select._fps_numba import kd_order

    if len(x) <= block:
        return np.arange(len(x), dtype=np.int64), np.array([0, len(x)], dtype=np.int64)
    z = np.empty((len(x), min(sketch, x.shape[1])), dtype=np.float32)
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), min(len(x), 4096), replace=False)]
    proj = _pca_sketch(sample, sketch, rng, basis_only=True)
    for lo in range(0, len(x), 1 << 16):
        z[lo : lo + (1 << 16)] = x[lo : lo + (1 << 16)] @ proj
    return kd_order(z, block)


def _super_blocks(cen: np.ndarray, rad: np.ndarray, sizes: np.ndarray, group: int = 16
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balls around ``group`` consecutive blocks (kd order keeps them close): ranges, centres, radii."""
    sstart = np.append(np.arange(0, len(rad), group), len(rad)).astype(np.int64)
    w = np.add.reduceat(cen * sizes[:, None], sstart[:-1], axis=0)
    scen = w / np.add.reduceat(sizes, sstart[:-1])[:, None]
    owner = np.repeat(np.arange(len(sstart) - 1), np.diff(sstart))
    reach = np.sqrt(((cen - scen[owner]) ** 2).sum(axis=1)) + rad
    srad = np.maximum.reduceat(reach, sstart[:-1]) * (1.0 + 1e-9) + 1e-12
    return sstart, scen, srad


def _fps_numba(
    x: np.ndarray, k: int, starts: list[int], last: bool, threads: int | None
) -> FPSResult:
    """Exact FPS with the compiled block kernel (see ``_fps_numba.py``)."""
    import numba

    from omni_data.select._fps_numba import block_balls, fps_blocks

    order, bstart = _block_order(x)
    xs = x[order]
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))
    cen, rad, a = block_balls(xs, bstart)
    sstart, scen, srad = _super_blocks(cen, rad, np.diff(bstart))
    most = numba.config.NUMBA_NUM_THREADS
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads or most, most)))
    try:
        picked, picked_d, computed = fps_blocks(
            xs, order, pos, bstart, cen, rad, a, sstart, scen, srad, k,
            np.asarray(starts, dtype=np.int64), last, _SLACK,
        )
    finally:
        numba.set_num_threads(previous)
    return FPSResult(picked, picked_d, int(computed))


def _fps_numpy(x: np.ndarray, k: int, starts: list[int], last: bool, threads: int) -> FPSResult:
    """Exact FPS with explicit Voronoi cells in numpy (no compiler needed)."""
    n = len(x)
    dist = _Distances(x, threads)
    r = np.full(n, np.inf, dtype=np.float32)
    cells: list[np.ndarray] = []
    cmax = np.empty(k, dtype=np.float64)
    carg = np.empty(k, dtype=np.int64)
    centers = np.empty((k, x.shape[1]), dtype=np.float64)
    picked = np.empty(k, dtype=np.int64)
    picked_d = np.empty(k, dtype=np.float32)
    try:
        for t in range(k):
            if t < len(starts):
                i = starts[t]
            else:
                top = cmax[:t].max()
                tied = np.flatnonzero(cmax[:t] == top)
                i = int(carg[tied].max() if last else carg[tied].min())
            picked[t], picked_d[t] = i, r[i]
            c = x[i]
            centers[t] = c
            if t == 0:
                members = np.arange(n, dtype=np.int64)
                r[:] = dist(members, c)
                cells.append(members)
                cmax[0], carg[0] = _cell_top(r, members, last)
                continue
            dcs = ((centers[:t] - centers[t]) ** 2).sum(axis=1)
            thresh = dcs * (1.0 - _SLACK)
            moved: list[np.ndarray] = []
            for s in np.flatnonzero(4.0 * cmax[:t] > thresh):
                members = cells[s]
                rr = r[members]
                check = np.flatnonzero(4.0 * rr.astype(np.float64) > thresh[s])
                if len(check) == 0:
                    continue
                sub = members[check]
                dd = dist(sub, c)
                better = dd < rr[check]
                if not better.any():
                    continue
                mv = sub[better]
                r[mv] = dd[better]
                moved.append(mv)
                keep = np.ones(len(members), dtype=bool)
                keep[check[better]] = False
                cells[s] = members = members[keep]
                cmax[s], carg[s] = _cell_top(r[members], members, last)
            new = np.sort(np.concatenate(moved)) if moved else np.empty(0, dtype=np.int64)
            cells.append(new)
            cmax[t], carg[t] = _cell_top(r[new], new, last)
    finally:
        dist.close()
    return FPSResult(picked, picked_d, dist.count)
