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

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np

from omni_data.select._fps_reference import sqdist_to, starts_list

__all__ = ["FPSResult", "check_points", "fps"]

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
    pick_distances: int = 0  # pick-to-pick distances evaluated by the numba kernel (not k^2/2)
    mind: np.ndarray | None = None  # with return_mind: each point's squared distance to the picks
    owner: np.ndarray | None = None  # numba with return_mind: pick number (0..k-1) giving mind

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
    progress: Callable[[int, float], None] | None = None,
    progress_every: float = 5.0,
    return_mind: bool = False,
    device: str = "cpu",
    storage: str = "float32",
) -> FPSResult:
    """Pick ``k`` points by farthest-point sampling; identical to ``fps_reference``.

    ``start_idx``: one index, or a list taken first in order (as fpsample); ``ties``: "last"
    (fpsample's ``>=`` rule) or "first" (numpy argmax). ``engine``: "numba" (compiled kernel,
    all cores), "numpy" (cell-pruned numpy, same picks, slower), "torch" (the plain loop on
    torch tensors on ``device``, stored as ``storage``: float32, float16 or bfloat16; see
    ``fps_torch.py``), "auto" (numba if installed).
    ``threads``: worker threads (default: all cores for numba, 2 for numpy).
    ``progress(picks_done, latest_sqdist)`` is called about every ``progress_every`` seconds
    while the numba kernel runs (from the calling thread), and once at the end.
    ``return_mind``: also give every point's float32 squared distance to its nearest pick
    (all ``k`` picks applied): its max is the covering radius, at the cost of one more pick.
    """
    if ties not in ("last", "first"):
        raise ValueError(f"ties must be 'last' or 'first', got {ties!r}")
    x = check_points(x)
    n = len(x)
    starts = starts_list(start_idx, n)
    if not len(starts) <= k <= n:
        raise ValueError(f"need len(start_idx) <= k <= n, got {len(starts)}, {k}, {n}")
    if engine != "torch" and (device != "cpu" or storage != "float32"):
        raise ValueError(f"device={device!r} / storage={storage!r} need engine='torch'")
    if engine == "auto":
        engine = "numba" if _have_numba() else "numpy"
    if engine == "numba":
        return _fps_numba(x, k, starts, ties == "last", threads, progress, progress_every, return_mind)
    if engine == "torch":
        from omni_data.select.fps_torch import fps_torch

        return fps_torch(
            x,
            k,
            starts,
            ties == "last",
            device,
            storage,
            progress=progress,
            progress_every=progress_every,
            final=return_mind,
        )
    if engine != "numpy":
        raise ValueError(f"engine must be 'auto', 'numba', 'numpy' or 'torch', got {engine!r}")
    res = _fps_numpy(x, k, starts, ties == "last", threads or 2)
    return res if return_mind else FPSResult(res.indices, res.sqdist, res.distances_computed)


def _have_numba() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def _pca_sketch(x: np.ndarray, dims: int, rng: np.random.Generator, basis_only: bool = False) -> np.ndarray:
    """Rows of ``x`` on their ``dims`` leading principal axes (float32), or just the axes."""
    n, d = x.shape
    sample = x[rng.choice(n, min(n, 4096), replace=False)].astype(np.float64)
    _, vecs = np.linalg.eigh(np.cov(sample, rowvar=False).reshape(d, d))
    w = np.ascontiguousarray(vecs[:, ::-1][:, : min(dims, d)], dtype=np.float32)
    return w if basis_only else (x - sample.mean(axis=0).astype(np.float32)) @ w


def _block_order(x: np.ndarray, block: int = 128, sketch: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
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


def _super_blocks(
    cen: np.ndarray, rad: np.ndarray, sizes: np.ndarray, group: int = 16
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
    x: np.ndarray,
    k: int,
    starts: list[int],
    last: bool,
    threads: int | None,
    progress: Callable[[int, float], None] | None = None,
    every: float = 5.0,
    final: bool = False,
) -> FPSResult:
    """Exact FPS with the compiled block kernel (see ``_fps_numba.py``)."""
    from omni_data.select._fps_numba import block_balls, fps_blocks

    order, bstart = _block_order(x)
    xs = x[order]
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))
    cen, rad, a = block_balls(xs, bstart)
    sstart, scen, srad = _super_blocks(cen, rad, np.diff(bstart))
    state = np.zeros(2 if progress is not None else 0, dtype=np.float64)

    def run() -> tuple[np.ndarray, np.ndarray, int, int, np.ndarray, np.ndarray]:
        with _numba_threads(threads) as most:
            return fps_blocks(
                xs,
                order,
                pos,
                bstart,
                cen,
                rad,
                a,
                sstart,
                scen,
                srad,
                k,
                np.asarray(starts, dtype=np.int64),
                last,
                _SLACK,
                state,
                most,
                final,
            )

    if progress is None:
        picked, picked_d, computed, pairs, r, own = run()
    else:
        picked, picked_d, computed, pairs, r, own = _watched(run, state, progress, every)
        progress(k, float(picked_d[-1]))
    mind = owner = None
    if final:
        mind = np.empty_like(r)
        mind[order] = r
        owner = np.empty_like(own)
        owner[order] = own
    return FPSResult(picked, picked_d, int(computed), int(pairs), mind, owner)


class _numba_threads:
    """Context: numba's thread count for this thread set to ``threads`` (all cores if None)."""

    def __init__(self, threads: int | None) -> None:
        import numba

        self.numba = numba
        most = int(getattr(numba.config, "NUMBA_NUM_THREADS"))  # noqa: B009  # set at import; not in numba's stubs
        self.want = max(1, min(threads or most, most))

    def __enter__(self) -> int:
        """Returns the most threads numba may ever run (bound on its thread ids)."""
        self.previous = self.numba.get_num_threads()
        self.numba.set_num_threads(self.want)
        return int(getattr(self.numba.config, "NUMBA_NUM_THREADS"))  # noqa: B009

    def __exit__(self, *exc: object) -> None:
        self.numba.set_num_threads(self.previous)


def _watched(run: Callable, state: np.ndarray, progress: Callable[[int, float], None], every: float):
    """Run the (GIL-free) kernel in a worker thread; report ``state`` every ``every`` s."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run)
        while True:
            try:
                return future.result(timeout=every)
            except FutureTimeout:
                if state[0] > 0:
                    progress(int(state[0]), float(state[1]))


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
    return FPSResult(picked, picked_d, dist.count, 0, r)
