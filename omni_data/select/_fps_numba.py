"""Compiled kernel of the exact fast FPS (numba; imported only when ``fps`` runs).

Points are first put in spatially tight blocks (``fps._block_order``: kd-tree on a PCA sketch,
then each block gets a bounding ball: centre ``m_b``, radius ``R_b``, and every point keeps
``a = d(x, m_b)``). For each new pick ``c`` a block is skipped whole when
``d(c, m_b) - R_b >= sqrt(max r in block)``; inside a visited block a point is skipped when
``|d(c, m_b) - a| >= sqrt(r)`` or ``d(c, s) >= 2 sqrt(r)`` with ``s`` its nearest pick
(triangle inequality, see ``fps.py``). ``d(c, s)`` is measured only for the picks that own a
point in a visited block, memoised per thread for the current pick: a pick never loops over
all earlier picks, so its cost is that of the blocks still in play. Remaining points get
the reference float32 distance (``acc += t*t`` in dimension order; numba's default
``fastmath=False`` keeps IEEE order and no fused multiply-add), abandoned early once the
partial sum reaches ``r`` (sums of non-negative float32 terms never decrease), which is still
exact. Blocks are grouped 16 at a time into super-blocks with their own ball, skipped whole
the same way (a block is first tested through the free bound ``|d(c, m_sb) - d(m_b, m_sb)|``);
super-blocks run in parallel. With ``final`` the last pick is applied too, so ``r`` ends as
every point's squared distance to the selection (the covering radius is its max).
"""

from __future__ import annotations

import os

# Numba's OpenMP layer spins idle threads by default; between the 1000s of short parallel
# regions of one FPS that burns the cores other Dask workers (or users) need. Passive waiting
# costs nothing measurable here. Only a default: a value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

_CACHE = 1024  # slots of the per-thread memo of d(pick, earlier pick)


@njit(inline="always")
def _better(v: float, i: int, bv: float, bi: int, last: bool) -> bool:
    """Does (value v, original index i) beat (bv, bi) under the argmax tie rule?"""
    if v > bv:
        return True
    if v == bv:
        return i > bi if last else i < bi
    return False


@njit(inline="always")
def _sqdist_one(x, p, c, bound):
    """Reference float32 squared distance of row p to c, abandoned once it reaches ``bound``."""
    d = x.shape[1]
    acc = np.float32(0.0)
    q = 0
    while q < d:
        stop = min(d, q + 16)
        for qq in range(q, stop):
            dq = x[p, qq] - c[qq]
            acc += dq * dq
        q = stop
        if acc >= bound:
            break
    return acc


@njit(inline="always")
def _owner_gap(x, prow, s, c, ckey, cpick, cval, tid, t) -> float:
    """``d(c, s)**2`` (float64) for earlier pick ``s``, memoised per thread for this pick ``t``.

    A direct-mapped cache (slot ``s % size``) tagged with the pick number: only the picks that
    own points in visited blocks are ever measured, never all earlier picks.
    """
    slot = s % (ckey.shape[1] - 1)
    if ckey[tid, slot] == s and cpick[tid, slot] == t:
        return cval[tid, slot]
    cval[tid, -1] += 1.0  # the last column counts the pick-to-pick distances measured
    row = prow[s]
    acc = 0.0
    for j in range(len(c)):
        diff = np.float64(x[row, j]) - np.float64(c[j])
        acc += diff * diff
    ckey[tid, slot] = s
    cpick[tid, slot] = t
    cval[tid, slot] = acc
    return acc


@njit(cache=True)
def _visit_block(x, orig, lo, hi, a, r, owner, prow, ckey, cpick, cval, tid, c, dcb, t, last, lo_slack, bv, bi):
    """Update one block's points for the new pick ``c``; returns (max r, its index, distances).

    ``bv, bi``: the block's max r and its index before this pick, returned as they are when no
    point's r changed.

    A point is skipped when ``|d(c, m_b) - a| >= sqrt(r)`` (ball test) or when its nearest pick
    ``s`` has ``d(c, s) >= 2 sqrt(r)`` (``_owner_gap``, asked only when the ball test fails).
    Points that pass are gathered first and then summed four at a time with four independent
    accumulators: each point still gets exactly the reference sequence of float32 operations,
    but the four dependency chains overlap in the CPU pipeline.
    """
    d = x.shape[1]
    buf = np.empty(hi - lo, dtype=np.int64)
    nc = 0
    for p in range(lo, hi):
        r64 = np.float64(r[p])
        g = dcb - a[p]
        if g * g * lo_slack < r64:
            s = owner[p]
            if s < 0 or 4.0 * r64 > lo_slack * _owner_gap(x, prow, s, c, ckey, cpick, cval, tid, t):
                buf[nc] = p
                nc += 1
    changed = False
    i = 0
    while i + 4 <= nc:
        p0, p1, p2, p3 = buf[i], buf[i + 1], buf[i + 2], buf[i + 3]
        r0, r1, r2, r3 = r[p0], r[p1], r[p2], r[p3]
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        q = 0
        while q < d:
            stop = min(d, q + 16)
            for qq in range(q, stop):
                cq = c[qq]
                t0 = x[p0, qq] - cq
                t1 = x[p1, qq] - cq
                t2 = x[p2, qq] - cq
                t3 = x[p3, qq] - cq
                a0 += t0 * t0
                a1 += t1 * t1
                a2 += t2 * t2
                a3 += t3 * t3
            q = stop
            if a0 >= r0 and a1 >= r1 and a2 >= r2 and a3 >= r3:
                break
        if a0 < r0:
            r[p0] = a0
            owner[p0] = t
            changed = True
        if a1 < r1:
            r[p1] = a1
            owner[p1] = t
            changed = True
        if a2 < r2:
            r[p2] = a2
            owner[p2] = t
            changed = True
        if a3 < r3:
            r[p3] = a3
            owner[p3] = t
            changed = True
        i += 4
    while i < nc:
        p = buf[i]
        acc = _sqdist_one(x, p, c, r[p])
        if acc < r[p]:
            r[p] = acc
            owner[p] = t
            changed = True
        i += 1
    if not changed:
        return bv, bi, nc
    bv = np.float32(-1.0)
    bi = -1
    for p in range(lo, hi):
        if _better(r[p], orig[p], bv, bi, last):
            bv = r[p]
            bi = orig[p]
    return bv, bi, nc


@njit(cache=True)
def _center_dist(cen, b, c) -> float:
    acc = 0.0
    for j in range(len(c)):
        diff = cen[b, j] - c[j]
        acc += diff * diff
    return np.sqrt(acc)


@njit(parallel=True, cache=True, nogil=True)
def fps_blocks(
    x: np.ndarray,  # (n, d) float32, rows in block order
    orig: np.ndarray,  # (n,) int64 original index of each row
    pos: np.ndarray,  # (n,) int64 row of each original index
    bstart: np.ndarray,  # (nb + 1,) int64 block row ranges
    bcen: np.ndarray,  # (nb, d) float64 block ball centres
    brad: np.ndarray,  # (nb,) float64 block ball radii
    a: np.ndarray,  # (n,) float64 distance of each row to its block centre
    sstart: np.ndarray,  # (ns + 1,) int64 super-block ranges over blocks
    scen: np.ndarray,  # (ns, d) float64 super-block ball centres
    srad: np.ndarray,  # (ns,) float64 super-block ball radii
    k: int,
    starts: np.ndarray,  # original indices taken first
    last: bool,
    slack: float,
    progress,  # (2,) float64 or empty: [0] = picks done, [1] = latest sqdist (for a watcher)
    nthreads: int,  # upper bound on numba.get_thread_id() (numba.config.NUMBA_NUM_THREADS)
    final: bool,  # also apply the last pick, so r ends as every row's distance to the selection
):
    """Exact FPS; returns (picked indices, squared distance at pick, point-pick distances done,
    pick-pick distances done, r per row in block order, owner per row: the pick number that
    gave its ``r``).

    Per pick the work is the super-block tests (O(ns d)) plus the blocks that can change;
    nothing loops over earlier picks.
    """
    n, d = x.shape
    nb = len(brad)
    ns = len(srad)
    r = np.full(n, np.inf, dtype=np.float32)
    owner = np.full(n, -1, dtype=np.int64)
    bmax = np.full(nb, np.inf, dtype=np.float32)
    barg = np.zeros(nb, dtype=np.int64)
    smax = np.full(ns, np.inf, dtype=np.float32)
    sarg = np.zeros(ns, dtype=np.int64)
    prow = np.empty(k, dtype=np.int64)
    ckey = np.full((nthreads, _CACHE + 1), -1, dtype=np.int64)
    cpick = np.full((nthreads, _CACHE + 1), -1, dtype=np.int64)
    cval = np.zeros((nthreads, _CACHE + 1), dtype=np.float64)
    work = np.zeros(ns, dtype=np.int64)
    picked = np.empty(k, dtype=np.int64)
    picked_d = np.empty(k, dtype=np.float32)
    c = np.empty(d, dtype=np.float32)
    computed = 0
    lo_slack = 1.0 - slack
    bsd = np.empty(nb, dtype=np.float64)  # distance of each block centre to its super-block's
    for sb in prange(ns):
        for b in range(sstart[sb], sstart[sb + 1]):
            acc = 0.0
            for j in range(d):
                diff = bcen[b, j] - scen[sb, j]
                acc += diff * diff
            bsd[b] = np.sqrt(acc)
    for t in range(k):
        if t < len(starts):
            i = starts[t]
        else:
            bv = np.float32(-1.0)
            i = -1
            for sb in range(ns):
                if _better(smax[sb], sarg[sb], bv, i, last):
                    bv = smax[sb]
                    i = sarg[sb]
        row = pos[i]
        picked[t] = i
        picked_d[t] = r[row]
        prow[t] = row
        if len(progress) >= 2:
            progress[1] = r[row]
            progress[0] = t + 1
        for j in range(d):
            c[j] = x[row, j]
        if t == k - 1 and not final:
            break
        for sb in prange(ns):
            dcs = _center_dist(scen, sb, c)
            gap = dcs - srad[sb]
            if gap > 0.0 and gap * gap * lo_slack >= smax[sb]:
                work[sb] = 0
                continue
            tid = numba.get_thread_id()
            cnt = 0
            sv = np.float32(-1.0)
            si = -1
            for b in range(sstart[sb], sstart[sb + 1]):
                # |d(c, m_sb) - d(m_b, m_sb)| <= d(c, m_b): skip without the d-dim distance
                gap = abs(dcs - bsd[b]) - brad[b]
                if gap > 0.0 and gap * gap * lo_slack >= bmax[b]:
                    dcb = -1.0
                else:
                    dcb = _center_dist(bcen, b, c)
                    gap = dcb - brad[b]
                if dcb >= 0.0 and not (gap > 0.0 and gap * gap * lo_slack >= bmax[b]):
                    bv, bi, bc = _visit_block(
                        x,
                        orig,
                        bstart[b],
                        bstart[b + 1],
                        a,
                        r,
                        owner,
                        prow,
                        ckey,
                        cpick,
                        cval,
                        tid,
                        c,
                        dcb,
                        t,
                        last,
                        lo_slack,
                        bmax[b],
                        barg[b],
                    )
                    bmax[b] = bv
                    barg[b] = bi
                    cnt += bc
                if _better(bmax[b], barg[b], sv, si, last):
                    sv = bmax[b]
                    si = barg[b]
            smax[sb] = sv
            sarg[sb] = si
            work[sb] = cnt
        computed += work.sum()
    return picked, picked_d, computed, int(cval[:, -1].sum()), r, owner


@njit(parallel=True, cache=True)
def block_balls(xs: np.ndarray, bstart: np.ndarray):
    """Per block: centre (float64 mean), radius (slightly inflated), each row's distance to it."""
    n, d = xs.shape
    nb = len(bstart) - 1
    cen = np.zeros((nb, d), dtype=np.float64)
    rad = np.zeros(nb, dtype=np.float64)
    a = np.empty(n, dtype=np.float64)
    for b in prange(nb):
        lo = bstart[b]
        hi = bstart[b + 1]
        for p in range(lo, hi):
            for j in range(d):
                cen[b, j] += xs[p, j]
        for j in range(d):
            cen[b, j] /= hi - lo
        big = 0.0
        for p in range(lo, hi):
            acc = 0.0
            for j in range(d):
                diff = xs[p, j] - cen[b, j]
                acc += diff * diff
            a[p] = np.sqrt(acc)
            big = max(big, a[p])
        rad[b] = big * (1.0 + 1e-9) + 1e-12
    return cen, rad, a


@njit(cache=True)
def _select(vals: np.ndarray, idx: np.ndarray, z: np.ndarray, lo: int, hi: int, kth: int) -> None:
    """Reorder vals/idx/z rows [lo:hi] so position kth holds its order statistic (quickselect)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        a, b, c = vals[lo], vals[mid], vals[hi - 1]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = lo, hi - 1
        while i <= j:
            while vals[i] < pivot:
                i += 1
            while vals[j] > pivot:
                j -= 1
            if i <= j:
                vals[i], vals[j] = vals[j], vals[i]
                idx[i], idx[j] = idx[j], idx[i]
                for col in range(z.shape[1]):
                    z[i, col], z[j, col] = z[j, col], z[i, col]
                i += 1
                j -= 1
        if kth <= j:
            hi = j + 1
        elif kth >= i:
            lo = i
        else:
            return


@njit(cache=True)
def kd_order(z: np.ndarray, leaf: int):
    """Row order of a kd-tree on ``z`` (median split on the widest column) and leaf bounds."""
    n, m = z.shape
    z = z.copy()  # rows move with ``order`` so every pass reads memory in sequence
    order = np.arange(n)
    vals = np.empty(n, dtype=z.dtype)
    vmin = np.empty(m, dtype=z.dtype)
    vmax = np.empty(m, dtype=z.dtype)
    stack = np.empty((128, 2), dtype=np.int64)
    bounds = np.empty(n // max(leaf // 2, 1) + 2, dtype=np.int64)
    nb = 0
    top = 1
    stack[0, 0] = 0
    stack[0, 1] = n
    while top > 0:
        top -= 1
        lo = stack[top, 0]
        hi = stack[top, 1]
        if hi - lo <= leaf:
            bounds[nb] = lo
            nb += 1
            continue
        for col in range(m):
            vmin[col] = z[lo, col]
            vmax[col] = vmin[col]
        for p in range(lo, hi):
            for col in range(m):
                v = z[p, col]
                vmin[col] = min(vmin[col], v)
                vmax[col] = max(vmax[col], v)
        axis = int(np.argmax(vmax - vmin))
        for p in range(lo, hi):
            vals[p] = z[p, axis]
        mid = lo + (hi - lo) // 2
        _select(vals, order, z, lo, hi, mid)
        stack[top, 0] = mid
        stack[top, 1] = hi
        stack[top + 1, 0] = lo
        stack[top + 1, 1] = mid
        top += 2
    out = np.sort(bounds[:nb])
    res = np.empty(nb + 1, dtype=np.int64)
    res[:nb] = out
    res[nb] = n
    return order, res
