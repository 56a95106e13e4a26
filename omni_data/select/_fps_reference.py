"""The plain O(N·k·d) farthest-point-sampling loop: the definition the fast code must match.

Arithmetic and rules are those of ``fpsample.fps_sampling`` (fpsample 1.0, ``src/lib.cpp``):
float32 squared distances summed over dimensions in order (``dist += d*d``), running minimum
with a strict ``<``, argmax with ``>=`` so ties go to the *last* index, and ``start_idx`` either
one index or a list of indices that are taken first, in order. ``ties="first"`` is offered for
callers that want numpy's ``argmax`` rule instead. Kept deliberately simple; used by tests only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sqdist_to(points_t: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Squared distances (float32) from the columns of ``points_t`` (d, m) to ``center`` (d,).

    Summed one dimension at a time in float32, exactly like fpsample's inner loop, so every
    row's value is independent of which other rows are in the batch.
    """
    acc = np.zeros(points_t.shape[1], dtype=np.float32)
    tmp = np.empty_like(acc)
    for j in range(points_t.shape[0]):
        np.subtract(points_t[j], center[j], out=tmp)
        np.multiply(tmp, tmp, out=tmp)
        np.add(acc, tmp, out=acc)
    return acc


def starts_list(start_idx: int | Sequence[int], n: int) -> list[int]:
    """Normalise ``start_idx`` (an index or a list of indices) and check the range."""
    starts = [int(start_idx)] if isinstance(start_idx, (int, np.integer)) else [int(s) for s in start_idx]
    if not starts:
        raise ValueError("start_idx must name at least one point")
    bad = [s for s in starts if not 0 <= s < n]
    if bad:
        raise ValueError(f"start_idx {bad[:5]} out of range for {n} points")
    return starts


def fps_reference(
    x: np.ndarray, k: int, start_idx: int | Sequence[int] = 0, ties: str = "last"
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``k`` farthest points and the squared min-distance each had when picked."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    starts = starts_list(start_idx, n)
    if not len(starts) <= k <= n:
        raise ValueError(f"need len(start_idx) <= k <= n, got {len(starts)}, {k}, {n}")
    xt = np.ascontiguousarray(x.T)
    mind = np.full(n, np.inf, dtype=np.float32)
    picked: list[int] = []
    dist: list[float] = []
    while len(picked) < k:
        if len(picked) < len(starts):
            i = starts[len(picked)]
        else:
            top = mind.max()
            hits = np.flatnonzero(mind == top)
            i = int(hits[-1] if ties == "last" else hits[0])
        dist.append(float(mind[i]))
        picked.append(i)
        np.minimum(mind, sqdist_to(xt, x[i]), out=mind)
    return np.asarray(picked, dtype=np.int64), np.asarray(dist, dtype=np.float32)
