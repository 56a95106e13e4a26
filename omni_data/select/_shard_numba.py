"""Compiled kernels of exact FPS in rounds (``distributed_exact.py``; numba, imported on use).

``apply_picks``: lower every shard row's float32 squared distance ``r`` to the picks by a batch
of picks made anywhere (vectors, not rows of the shard). The pruning is that of the one-node
kernel (``_fps_numba.py``): a super-block or block is skipped whole when ``d(c, m) - R >=
sqrt(max r inside)``, a row when ``|d(c, m_b) - a| >= sqrt(r)`` or when its nearest pick ``s`` has
``d(c, s) >= 2 sqrt(r)``; the
distances that are computed use the reference float32 arithmetic (``_fps_numba._sqdist_one``),
so every ``r`` equals the plain loop's bit for bit whatever shard the picks came from.

``lower_pool``: the same update for the coordinator's pool of reported rows (no pruning).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from omni_data.select._fps_numba import _center_dist, _sqdist_one

__all__ = ["apply_picks", "lower_pool"]


@njit(cache=True)
def _pick_gap(pv, s, c, mkey, mval, t) -> float:
    """``d(c, pick s)**2`` (float64), memoised for the current pick ``t``."""
    if mkey[s] == t:
        return mval[s]
    acc = 0.0
    for j in range(len(c)):
        diff = np.float64(pv[s, j]) - np.float64(c[j])
        acc += diff * diff
    mkey[s] = t
    mval[s] = acc
    return acc


@njit(cache=True)
def apply_picks(
    xs, bstart, bcen, brad, a, sstart, scen, srad, bsd, r, owner, bmax, smax, pv, first, mkey, mval, lo_slack
):
    """Apply picks ``pv[first:]`` (vectors, float32; ``pv[:first]`` applied before) to ``r``
    (rows in block order); keeps each row's nearest pick (``owner``) and the block / super-block
    maxima of ``r``; returns the point-pick distances computed.

    A row is skipped when its ball bound or its nearest pick ``s`` already rules the new pick out:
    ``d(c, s) >= 2 sqrt(r)`` gives ``d(x, c) >= sqrt(r)`` (``_fps_numba._visit_block``'s test).
    """
    computed = 0
    for t in range(first, pv.shape[0]):
        c = pv[t]
        for sb in range(len(srad)):
            dcs = _center_dist(scen, sb, c)
            gap = dcs - srad[sb]
            if gap > 0.0 and gap * gap * lo_slack >= smax[sb]:
                continue
            sv = np.float32(0.0)
            for b in range(sstart[sb], sstart[sb + 1]):
                gap = abs(dcs - bsd[b]) - brad[b]  # free lower bound on d(c, m_b) - R_b
                if not (gap > 0.0 and gap * gap * lo_slack >= bmax[b]):
                    dcb = _center_dist(bcen, b, c)
                    gap = dcb - brad[b]
                    if not (gap > 0.0 and gap * gap * lo_slack >= bmax[b]):
                        bv = np.float32(0.0)
                        for p in range(bstart[b], bstart[b + 1]):
                            rp = r[p]
                            r64 = np.float64(rp)
                            g = dcb - a[p]
                            if g * g * lo_slack < r64:
                                o = owner[p]
                                if o < 0 or 4.0 * r64 > lo_slack * _pick_gap(pv, o, c, mkey, mval, t):
                                    d2 = _sqdist_one(xs, p, c, rp)
                                    computed += 1
                                    if d2 < rp:
                                        r[p] = d2
                                        owner[p] = t
                                        rp = d2
                            if rp > bv:
                                bv = rp
                        bmax[b] = bv
                if bmax[b] > sv:
                    sv = bmax[b]
            smax[sb] = sv
    return computed


@njit(cache=True)
def lower_pool(px, pr, c, floor):
    """``pr[i] = min(pr[i], |px[i] - c|^2)`` in the reference float32 arithmetic, for the rows
    still at or above ``floor``; a row that falls below it is set to -1 (out of this round)."""
    for i in range(px.shape[0]):
        if pr[i] < floor:
            pr[i] = -1.0
            continue
        s = _sqdist_one(px, i, c, pr[i])
        if s < pr[i]:
            pr[i] = s
            if s < floor:
                pr[i] = -1.0
