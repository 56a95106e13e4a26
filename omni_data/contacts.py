"""The closest pair of atoms nearer than a cutoff, periodic images included; fast at every size.

``closest_pair(positions, cell, pbc, cutoff)`` answers "are any two atoms (or an atom and a
periodic image, its own included) closer than ``cutoff``?" and names the closest such pair. It
runs on every record at ingest (``record_checks.close_contacts``, batched by ``closest_pairs``) and for
the manifest ``min_distance`` filter, so the common cases are cheap:

* up to ``BRUTE_FORCE_MAX`` points: every pair in a handful of numpy operations (for a periodic
  cell, minimum image by rounding fractional differences: exact while every periodic lattice
  plane spacing is at least ``2 * cutoff``);
* more points: a KD-tree (``scipy.spatial.cKDTree``) over the atoms wrapped into the cell plus
  ghost copies of the atoms within ``cutoff`` of a periodic face, queried for each atom's nearest
  other point, so time grows as n log n and memory as n however crowded the atoms are (exact
  duplicates, which a KD-tree cannot split, are found first by one sort);
* a cell thinner than ``2 * cutoff`` along a periodic direction is first Minkowski-reduced
  (``ase.geometry.minkowski_reduce``, same lattice, shortest basis); ghosts then come from every
  lattice translation that can reach within ``cutoff`` of the cell. An atom nearer than
  ``cutoff`` to its own image is reported as the pair ``(i, i)``.

vesin's neighbour list was measured here at 4-20 ms per small structure for a 0.1 Å cutoff (its
cell list bins the whole box at the cutoff's size); this module takes microseconds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["closest_pair", "closest_pairs"]

BRUTE_FORCE_MAX = 64
"""Point counts up to this are checked pair by pair (n² distances); above it, with a KD-tree."""

MAX_TRANSLATIONS = 343
"""Most lattice translations tried per atom (7 per direction). A Minkowski-reduced cell needs
more only when its shortest vector is far under the cutoff; that vector is then the answer."""

Pair = tuple[float, int, int]


def closest_pair(
    positions: np.ndarray, cell: np.ndarray | None, pbc: Sequence[bool] | np.ndarray, cutoff: float
) -> Pair | None:
    """``(distance, i, j)`` of the closest pair nearer than ``cutoff`` Å (``i <= j``; ``i == j``
    is an atom and its own periodic image), or None when no pair is that close.

    ``positions`` (n, 3) and ``cell`` (3, 3, rows are lattice vectors) in Å; ``pbc`` per lattice
    vector. Without a cell, or with no periodic direction, the atoms are a molecule. A periodic
    cell must have a non-zero volume (``record_checks.problem`` refuses the others first).
    """
    with np.errstate(all="ignore"):  # absurd (hostile) coordinates give inf/nan, never warnings
        return _closest_pair(positions, cell, pbc, cutoff)


def _closest_pair(
    positions: np.ndarray, cell: np.ndarray | None, pbc: Sequence[bool] | np.ndarray, cutoff: float
) -> Pair | None:
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    periodic = [bool(p) for p in np.asarray(pbc).reshape(-1)[:3]]
    if cell is None or not any(periodic):
        return None if len(pos) < 2 else _closest(pos, np.arange(len(pos)), cutoff)
    lattice = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if not all(periodic):
        lattice = _periodic_frame(lattice, periodic)
    heights, inverse = _geometry(lattice)
    if any(p and h < 2 * cutoff for p, h in zip(periodic, heights)):
        return _thin_cell(pos, lattice, periodic, cutoff)
    if len(pos) < 2:
        return None  # an atom's own images are at least one plane spacing (>= 2 cutoff) away
    if len(pos) <= BRUTE_FORCE_MAX:
        return _minimum_image_brute(pos, lattice, inverse, periodic, cutoff)
    points, owner = _with_ghosts(pos, lattice, inverse, periodic, heights, cutoff, (1, 1, 1))
    return _closest(points, owner, cutoff, len(pos))


BATCH_ELEMENTS = 3_000_000
"""Most float64 values in one batched pair computation (24 MB): bounds ``closest_pairs``' memory."""


def closest_pairs(
    structures: Sequence[tuple[np.ndarray, np.ndarray | None, Sequence[bool] | np.ndarray]], cutoff: float
) -> list[Pair | None]:
    """``closest_pair`` of each ``(positions, cell, pbc)``, computed in batches.

    Structures of up to ``BRUTE_FORCE_MAX`` atoms are grouped by atom count (molecules apart
    from fully periodic cells) and checked with a few numpy operations per group instead of per
    structure: at ingest a partition's small structures cost about a microsecond each. The rest
    (large, partly periodic, thin cells) go through ``closest_pair`` one by one (which may raise
    ``ValueError`` for a degenerate cell).
    """
    with np.errstate(all="ignore"):  # absurd (hostile) coordinates give inf/nan, never warnings
        return _closest_pairs(structures, cutoff)


def _closest_pairs(
    structures: Sequence[tuple[np.ndarray, np.ndarray | None, Sequence[bool] | np.ndarray]], cutoff: float
) -> list[Pair | None]:
    out: list[Pair | None] = [None] * len(structures)
    groups: dict[tuple[int, bool], list[int]] = {}
    for k, (pos, cell, pbc) in enumerate(structures):
        n = len(pos)
        flags = pbc.tolist() if type(pbc) is np.ndarray else list(pbc)
        periodic = cell is not None and True in flags
        if n > BRUTE_FORCE_MAX or (periodic and False in flags):
            out[k] = closest_pair(pos, cell, pbc, cutoff)
        elif n >= 2 or periodic:
            groups.setdefault((n, periodic), []).append(k)
    for (n, periodic), members in groups.items():
        step = max(1, BATCH_ELEMENTS // (3 * n * n))
        for start in range(0, len(members), step):
            chunk = members[start : start + step]
            positions = np.stack([np.asarray(structures[k][0], dtype=np.float64).reshape(n, 3) for k in chunk])
            if periodic:
                cells = np.stack([np.asarray(structures[k][1], dtype=np.float64).reshape(3, 3) for k in chunk])
                found, thin = _batch_periodic(positions, cells, cutoff)
                for k, t in zip(chunk, thin):
                    if t:
                        out[k] = closest_pair(*structures[k], cutoff)
            else:
                found = _batch_pairs(positions, positions[:, None, :, :] - positions[:, :, None, :], cutoff)
            for k, pair in zip(chunk, found):
                if pair is not None:
                    out[k] = pair
    return out


def _batch_pairs(positions: np.ndarray, diff: np.ndarray, cutoff: float) -> list[Pair | None]:
    """The closest pair under ``cutoff`` of each structure from its (B, n, n, 3) separations."""
    b, n = positions.shape[:2]
    if n < 2:
        return [None] * b
    d2 = np.einsum("bijk,bijk->bij", diff, diff)
    d2[:, np.arange(n), np.arange(n)] = np.inf
    flat = d2.reshape(b, n * n)
    best = flat.argmin(axis=1)
    nearest = flat[np.arange(b), best]
    out: list[Pair | None] = [None] * b
    for k in np.flatnonzero(nearest < cutoff * cutoff).tolist():
        i, j = divmod(int(best[k]), n)
        out[k] = (math.sqrt(float(nearest[k])), min(i, j), max(i, j))
    return out


def _batch_periodic(positions: np.ndarray, cells: np.ndarray, cutoff: float) -> tuple[list[Pair | None], np.ndarray]:
    """Minimum-image closest pairs of B fully periodic structures of n atoms each, and which of
    them have a cell thinner than ``2 cutoff`` (not answered here: see ``_thin_cell``)."""
    a, b, c = cells[:, 0], cells[:, 1], cells[:, 2]
    crosses = np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=1)  # (B, 3, 3)
    volume = np.einsum("bk,bk->b", a, crosses[:, 0])
    heights = np.abs(volume)[:, None] / np.linalg.norm(crosses, axis=2)
    thin = ~(heights >= 2 * cutoff).all(axis=1) | ~np.isfinite(heights).all(axis=1)
    inverse = np.swapaxes(crosses, 1, 2) / volume[:, None, None]
    if thin.any():
        inverse[thin] = 0.0  # answered one by one; zeros keep the batch free of NaN
    frac = positions @ inverse
    thin |= ~np.isfinite(frac).all(axis=(1, 2))  # absurd coordinates: closest_pair names the problem
    diff = frac[:, None, :, :] - frac[:, :, None, :]
    diff -= np.rint(diff)
    found = _batch_pairs(positions, diff @ cells[:, None, :, :], cutoff)
    return [None if t else pair for pair, t in zip(found, thin.tolist())], thin


def _periodic_frame(lattice: np.ndarray, periodic: list[bool]) -> np.ndarray:
    """``lattice`` with its non-periodic rows replaced by unit vectors orthogonal to the periodic
    rows and to each other: only translations along periodic vectors make images, and this way a
    non-periodic vector lying almost in the periodic plane cannot make plane spacings tiny."""
    out = lattice.copy()
    axes = [k for k in range(3) if periodic[k]]
    free = [k for k in range(3) if not periodic[k]]
    if len(axes) == 2:
        normal = np.cross(lattice[axes[0]], lattice[axes[1]])
        out[free[0]] = normal / np.linalg.norm(normal)
    else:  # one periodic vector: two unit vectors perpendicular to it
        a = lattice[axes[0]] / np.linalg.norm(lattice[axes[0]])
        u = np.cross(a, np.eye(3)[int(np.argmin(np.abs(a)))])
        u /= np.linalg.norm(u)
        out[free[0]], out[free[1]] = u, np.cross(a, u)
    if np.linalg.det(out) < 0:  # keep a right-handed frame (not needed for distances; tidier)
        out[free[0]] *= -1
    return out


def _geometry(lattice: np.ndarray) -> tuple[list[float], np.ndarray]:
    """Plane spacing along each lattice vector (V / |a_j x a_k|) and the inverse of ``lattice``
    (columns: reciprocal vectors), from the cross products in Python floats (no numpy calls on
    3-vectors, which cost more than the arithmetic)."""
    (a1, a2, a3), (b1, b2, b3), (c1, c2, c3) = lattice.tolist()
    crosses = [
        (b2 * c3 - b3 * c2, b3 * c1 - b1 * c3, b1 * c2 - b2 * c1),  # b x c
        (c2 * a3 - c3 * a2, c3 * a1 - c1 * a3, c1 * a2 - c2 * a1),  # c x a
        (a2 * b3 - a3 * b2, a3 * b1 - a1 * b3, a1 * b2 - a2 * b1),
    ]  # a x b
    volume = a1 * crosses[0][0] + a2 * crosses[0][1] + a3 * crosses[0][2]
    heights = []
    for x, y, z in crosses:
        area = math.sqrt(x * x + y * y + z * z)
        heights.append(abs(volume) / area if area > 0 else 0.0)
    if not (volume != 0 and math.isfinite(volume) and all(0 < h < math.inf for h in heights)):
        spacings = ", ".join(f"{h:.3g}" for h in heights)
        raise ValueError(f"periodic cell with volume {volume:.3g} Å³ and plane spacings {spacings} Å cannot be used")
    inverse = np.array(crosses, dtype=np.float64).T / volume
    return heights, inverse


def _closest(points: np.ndarray, owner: np.ndarray, cutoff: float, n_real: int | None = None) -> Pair | None:
    """The closest pair of ``points`` nearer than ``cutoff``, named by ``owner`` (atom index).

    ``points[:n_real]`` are the atoms themselves (default: all); the rest are periodic copies,
    and every pair under ``cutoff`` has an atom in it (``_with_ghosts``)."""
    m = len(points)
    if m < 2:
        return None
    if m <= BRUTE_FORCE_MAX:
        diff = points[None, :, :] - points[:, None, :]
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        np.fill_diagonal(d2, np.inf)
        a, b = divmod(int(np.argmin(d2)), m)
        d = math.sqrt(float(d2[a, b]))
    elif (twin := _exact_duplicate(points)) is not None:  # a KD-tree cannot split equal points
        a, b = twin
        d = 0.0
    else:  # each real atom's nearest other point: memory stays O(m) however crowded the atoms are
        from scipy.spatial import cKDTree

        n = m if n_real is None else n_real
        dist, index = cKDTree(points).query(points[:n], k=2, distance_upper_bound=cutoff)
        other = np.where(index[:, 0] == np.arange(n), 1, 0)  # skip the atom itself (ties at 0 included)
        rows = np.arange(n)
        dist, index = dist[rows, other], index[rows, other]
        a = int(np.argmin(dist))
        b, d = int(index[a]), float(dist[a])
    if not d < cutoff:
        return None
    i, j = sorted((int(owner[a]), int(owner[b])))
    return d, i, j


def _exact_duplicate(points: np.ndarray) -> tuple[int, int] | None:
    """Two indices of points at exactly the same place, if any (one sort, n log n)."""
    order = np.lexsort(points.T[::-1])
    same = (np.diff(points[order], axis=0) == 0).all(axis=1)
    if not same.any():
        return None
    k = int(np.argmax(same))
    return int(order[k]), int(order[k + 1])


def _minimum_image_brute(
    pos: np.ndarray, lattice: np.ndarray, inverse: np.ndarray, periodic: list[bool], cutoff: float
) -> Pair | None:
    """Every pair under the minimum-image convention (exact while plane spacings >= 2 cutoff:
    a vector shorter than ``cutoff`` then has fractional components inside (-1/2, 1/2))."""
    n = len(pos)
    frac = (pos[None, :, :] - pos[:, None, :]) @ inverse
    if not np.isfinite(frac).all():
        raise ValueError("atom positions cannot be expressed in the cell (coordinates too large)")
    if all(periodic):
        frac -= np.rint(frac)
    else:
        frac -= np.rint(frac) * np.array(periodic, dtype=np.float64)
    diff = frac @ lattice
    d2 = np.einsum("ijk,ijk->ij", diff, diff)
    np.fill_diagonal(d2, np.inf)
    i, j = divmod(int(np.argmin(d2)), n)
    d = math.sqrt(float(d2[i, j]))
    return (d, min(i, j), max(i, j)) if d < cutoff else None


def _with_ghosts(
    pos: np.ndarray,
    lattice: np.ndarray,
    inverse: np.ndarray,
    periodic: list[bool],
    heights: list[float],
    cutoff: float,
    reach: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Atoms wrapped into the cell plus their periodic copies that lie within ``cutoff`` of it
    (at most ``reach[k]`` lattice translations along periodic vector ``k``), and each point's
    atom index. Any pair nearer than ``cutoff`` is then a pair among these points: its fractional
    separation along vector k is under ``cutoff / heights[k]``."""
    frac = pos @ inverse
    if not np.isfinite(frac).all():
        raise ValueError("atom positions cannot be expressed in the cell (coordinates too large)")
    margin = np.array([cutoff / h if p else -np.inf for p, h in zip(periodic, heights)])
    for axis, p in enumerate(periodic):
        if p:
            frac[:, axis] -= np.floor(frac[:, axis])
    lo = np.where(periodic, -margin, -np.inf)
    hi = np.where(periodic, 1 + margin, np.inf)
    # an atom with a copy inside (lo, hi) lies within ``margin`` of a periodic face
    near = np.flatnonzero(((frac < margin) | (frac > 1 - margin)).any(axis=1))
    ranges = [range(-r, r + 1) if p else range(0, 1) for p, r in zip(periodic, reach)]
    shifts = np.array([s for s in itertools.product(*ranges) if any(s)], dtype=np.float64).reshape(-1, 3)
    ghost_frac, ghost_owner = [frac], [np.arange(len(pos))]
    for chunk in np.array_split(near, len(near) * len(shifts) // 1_000_000 + 1):  # bounded memory
        moved = frac[chunk][:, None, :] + shifts[None, :, :]
        atom, shift = np.nonzero(((moved > lo) & (moved < hi)).all(axis=2))
        ghost_frac.append(moved[atom, shift])
        ghost_owner.append(chunk[atom])
    return np.concatenate(ghost_frac) @ lattice, np.concatenate(ghost_owner)


def _thin_cell(pos: np.ndarray, lattice: np.ndarray, periodic: list[bool], cutoff: float) -> Pair | None:
    """A cell thinner than ``2 cutoff`` along a periodic vector: reduce it (same lattice, shortest
    basis), report an atom nearer than ``cutoff`` to its own image, else check every pair with
    all the images that can reach within ``cutoff``."""
    from ase.geometry import minkowski_reduce

    try:
        reduced = np.asarray(minkowski_reduce(lattice, pbc=periodic)[0], dtype=np.float64)
    except (RuntimeError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        raise ValueError(f"periodic cell could not be reduced ({exc})") from None
    shortest = min(math.sqrt(float(v @ v)) for v, p in zip(reduced, periodic) if p)
    own: Pair | None = (shortest, 0, 0) if shortest < cutoff else None  # atom 0 stands for every atom
    heights, inverse = _geometry(reduced)
    reach = [math.ceil(cutoff / h) if p else 0 for p, h in zip(periodic, heights)]
    if math.prod(2 * r + 1 for r in reach) > MAX_TRANSLATIONS:  # only with a vector far under cutoff
        if own is not None:
            return own
        raise ValueError(f"periodic cell too thin to check: plane spacings {', '.join(f'{h:.3g}' for h in heights)} Å")
    points, owner = _with_ghosts(pos, reduced, inverse, periodic, heights, cutoff, reach)
    found = _closest(points, owner, cutoff, len(pos))
    return own if own is not None and (found is None or own[0] < found[0]) else found
