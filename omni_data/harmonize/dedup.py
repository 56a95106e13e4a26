"""Frame-level structure hash: equal for copies of one frame, different for different frames.

Invariant to atom order, translation and (fully periodic frames) the choice of cell basis; not
a material fingerprint -- two frames of one relaxation differ by more than the tolerance and
hash differently, and a supercell (more atoms) is a different frame.

Canonical form
1. Fully periodic: Niggli-reduce the cell; the reduced metric is unique, and the remaining basis
   freedom is an automorphism ``M`` of that metric (integer, |det| = 1, ``M G Mᵀ = G``); every such
   ``M`` is tried. Non-periodic:
   Cartesian coordinates (rotated copies of a molecule are *not* detected). Partly periodic
   (slabs, wires): the periodic cell vectors are kept as given; the non-periodic ones are
   replaced by unit normals, so the vacuum size does not matter.
2. For each basis and each atom of the rarest species (ties: lowest Z) as origin -- narrowed to
   those with the smallest sum of minimum-image distances to all atoms (an invariant) --, coordinates
   relative to the origin, wrapped along periodic axes, quantised to ``tol`` Å, rows sorted by
   (Z, q1, q2, q3). The lexicographically smallest candidate is the canonical form.
3. sha256 over the periodicity, the quantised metric and the canonical array.

Mirror images hash equal for periodic frames (fractional coordinates and the metric do not see
handedness); they have equal DFT labels, so this is harmless for dedup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_TOL",
    "SECTION",
    "SIDECAR",
    "drop_within_task",
    "hash_stores",
    "lattice_automorphisms",
    "record_hash",
    "shard_hashes",
    "structure_hash",
    "summarize",
]

DEFAULT_TOL = 1e-4  # Å


@lru_cache(maxsize=1)
def _unimodular() -> np.ndarray:
    """All 3×3 integer matrices with entries in {-1, 0, 1} and |det| = 1."""
    vals = np.array([-1, 0, 1])
    grid = np.stack(np.meshgrid(*([vals] * 9), indexing="ij"), -1).reshape(-1, 3, 3)
    det = np.rint(np.linalg.det(grid)).astype(int)
    return grid[np.abs(det) == 1].astype(np.float64)


def lattice_automorphisms(cell: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """Integer basis changes ``M`` of a reduced cell that keep its metric: ``M G Mᵀ ≈ G``."""
    g = cell @ cell.T
    mats = _unimodular()
    mgm = np.einsum("kij,jl,kml->kim", mats, g, mats)
    scale = np.abs(g).max()
    ok = np.all(np.abs(mgm - g) <= rtol * scale, axis=(1, 2))
    return mats[ok]


def _niggli(cell: np.ndarray) -> np.ndarray:
    from ase.cell import Cell

    # ASE returns the reduced cell rotated to a standard orientation; ``opᵀ @ cell`` is the same
    # reduced basis in the frame of the atoms' positions (checked: same metric as the rotated one).
    _rotated, op = Cell(cell).niggli_reduce(eps=1e-5)
    return np.asarray(op, dtype=np.float64).T @ cell


def _partial_basis(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """The cell with its non-periodic rows replaced by unit vectors normal to the periodic ones.

    A non-periodic cell vector (vacuum size, or zero) carries no physics; replacing it makes
    the hash independent of it and keeps the basis invertible.
    """
    per = cell[pbc]
    out = cell.copy()
    if len(per) == 2:
        n = np.cross(per[0], per[1])
        normals = [n / np.linalg.norm(n)]
    else:  # one periodic axis: two unit vectors perpendicular to it
        a = per[0] / np.linalg.norm(per[0])
        helper = np.eye(3)[int(np.argmin(np.abs(a)))]
        u = np.cross(a, helper)
        u /= np.linalg.norm(u)
        normals = [u, np.cross(a, u)]
    for k, i in enumerate(np.flatnonzero(~pbc)):
        out[i] = normals[k]
    return out


def _origins(numbers: np.ndarray) -> np.ndarray:
    zs, counts = np.unique(numbers, return_counts=True)
    rare = zs[np.argmin(counts)]  # argmin takes the first (lowest Z) among ties
    return np.flatnonzero(numbers == rare)


def _narrow_origins(pos: np.ndarray, origins: np.ndarray, cell: np.ndarray | None, tol: float) -> np.ndarray:
    """Origin candidates whose environment key is smallest; the key (sum of minimum-image
    distances to all atoms, quantised to ``tol``) does not depend on order, translation or basis,
    so copies keep the same candidates. Perfect crystals keep them all (every key ties); a
    rattled frame usually keeps one, which saves the search over origins.

    ``cell`` must be Niggli-reduced (then the 27 neighbouring images contain the minimum image).
    """
    if len(origins) <= 1:
        return origins
    shifts = None
    if cell is not None:
        grid = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T
        shifts = grid @ cell
        inv = np.linalg.inv(cell)
    keys = []
    for block in np.array_split(origins, -(-len(origins) // 16)):
        d = pos[None, :, :] - pos[block][:, None, :]
        if shifts is None:
            dist = np.linalg.norm(d, axis=-1)
        else:
            frac = d @ inv
            d = (frac - np.rint(frac)) @ cell
            dist = np.linalg.norm(d[:, :, None, :] + shifts[None, None], axis=-1).min(axis=2)
        keys.append(dist.sum(axis=1))
    key = np.rint(np.concatenate(keys) / tol)
    return origins[key == key.min()]


def _best(
    numbers: np.ndarray, coords: np.ndarray, origins: np.ndarray, periodic: np.ndarray, grid: np.ndarray
) -> bytes:
    """Smallest canonical byte string over origin choices, for coordinates in one basis.

    ``coords`` are fractional along periodic axes (grid = points per axis) and scaled so that
    one unit is ``tol`` along non-periodic axes (grid ignored there).
    """
    best: bytes | None = None
    for o in origins:
        rel = coords - coords[o]
        q = np.rint(np.where(periodic, rel * grid, rel)).astype(np.int64)
        q = np.where(periodic, np.mod(q, grid.astype(np.int64)), q)
        table = np.column_stack([numbers, q])
        order = np.lexsort(table.T[::-1])
        cand = table[order].tobytes()
        if best is None or cand < best:
            best = cand
    assert best is not None
    return best


def structure_hash(
    numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray, tol: float = DEFAULT_TOL
) -> str:
    """Hex sha256 (32 chars) of the canonical form described in the module docstring."""
    numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    if len(numbers) == 0:
        raise ValueError("structure_hash: empty structure")
    origins = _origins(numbers)
    h = hashlib.sha256()
    h.update(pbc.tobytes())
    if not pbc.any() or cell is None:
        origins = _narrow_origins(pos, origins, None, tol)
        best = _best(numbers, pos / tol, origins, np.zeros(3, bool), np.ones(3))
    else:
        cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        if pbc.all():
            reduced = _niggli(cell)
            bases = [m @ reduced for m in lattice_automorphisms(reduced)]
            cell = reduced
            origins = _narrow_origins(pos, origins, reduced, tol)
        else:
            cell = _partial_basis(cell, pbc)
            bases = [cell]
        lengths = np.linalg.norm(cell, axis=1)  # non-periodic rows are unit vectors
        g = cell @ cell.T
        cosines = g / np.outer(lengths, lengths)
        pairs = [(i, j) for i in range(3) for j in range(i + 1, 3) if pbc[i] and pbc[j]]
        h.update(np.rint(lengths[pbc] / tol).astype(np.int64).tobytes())
        h.update(np.rint(np.array([cosines[i, j] for i, j in pairs]) * 1e5).astype(np.int64).tobytes())
        # points per axis: a multiple of 720 so that special positions (k/2, k/3, k/4, k/8, ...)
        # fall on grid points, never on a rounding boundary that a sign flip would move
        grid = np.ceil(lengths / tol / 720.0) * 720.0
        best = None
        for basis in bases:
            frac = np.linalg.solve(basis.T, pos.T).T
            coords = np.where(pbc, frac, frac * lengths / tol)
            cand = _best(numbers, coords, origins, pbc, grid)
            if best is None or cand < best:
                best = cand
    h.update(best)
    return h.hexdigest()[:32]


def record_hash(record, tol: float = DEFAULT_TOL) -> str:
    """``structure_hash`` of a ``Record``."""
    return structure_hash(record.numbers, record.positions, record.cell, record.pbc, tol)


# --- over stores -----------------------------------------------------------------------------

SECTION = "dedup"
SIDECAR = "dedup"


def shard_hashes(store_path: str, shard: str, tol: float = DEFAULT_TOL) -> Any:
    """Dask task: (id, dataset, task, hash) of one shard, also written as its sidecar."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from omni_data.store import Store, sidecar_path

    rows: dict[str, list[str]] = {"id": [], "dataset": [], "task": [], "hash": []}
    for rec in Store(store_path).iter_shard(shard):
        rows["id"].append(rec.id)
        rows["dataset"].append(rec.dataset)
        rows["task"].append(rec.task)
        rows["hash"].append(record_hash(rec, tol))
    table = pa.table({k: pa.array(v, pa.string()) for k, v in rows.items()})
    final = sidecar_path(store_path, SIDECAR, shard, ".parquet")
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    pq.write_table(table, str(tmp))
    os.replace(tmp, final)
    return table


def hash_stores(store_paths: Sequence[str], tol: float = DEFAULT_TOL, workers: int = 1, client: Any = None) -> Any:
    """One table (store, shard, id, dataset, task, hash) over every shard of every store, in order."""
    from functools import partial

    import pyarrow as pa

    from omni_data.harmonize.shards import map_shards
    from omni_data.store import Store

    parts = []
    for path in store_paths:
        names = Store(path).shard_names
        tables = map_shards(path, partial(shard_hashes, tol=tol), names, workers, client)
        for name, t in zip(names, tables):
            parts.append(
                t.append_column("store", pa.array([str(path)] * len(t), pa.string())).append_column(
                    "shard", pa.array([name] * len(t), pa.string())
                )
            )
    if not parts:
        return pa.table({k: pa.array([], pa.string()) for k in ("id", "dataset", "task", "hash", "store", "shard")})
    return pa.concat_tables(parts)


def summarize(table: Any, tol: float, examples: int = 20) -> dict[str, Any]:
    """Duplicate counts within each task and dataset, and hashes shared across datasets.

    ``within_task[t]`` counts the extra copies (a group of k equal frames counts k - 1).
    """
    from collections import defaultdict

    ids, datasets, tasks, hashes = (table.column(c).to_pylist() for c in ("id", "dataset", "task", "hash"))
    out: dict[str, Any] = {"tol": tol, "records": len(ids), "unique": len(set(hashes))}
    for key, values in (("task", tasks), ("dataset", datasets)):
        seen: dict[str, set[str]] = defaultdict(set)
        total: dict[str, int] = defaultdict(int)
        for v, h in zip(values, hashes):
            seen[v].add(h)
            total[v] += 1
        out[f"within_{key}"] = {v: total[v] - len(seen[v]) for v in sorted(total)}
    by_hash_ds: dict[str, set[str]] = defaultdict(set)
    by_hash_ids: dict[str, list[str]] = defaultdict(list)
    for rid, ds, h in zip(ids, datasets, hashes):
        by_hash_ds[h].add(ds)
        by_hash_ids[h].append(rid)
    out["across_datasets"] = sum(1 for d in by_hash_ds.values() if len(d) > 1)
    groups = [sorted(v) for v in by_hash_ids.values() if len(v) > 1]
    out["examples"] = [g[:10] for g in groups[:examples]]
    return out


def drop_within_task(table: Any, store_paths: Sequence[str], out: str) -> dict[str, int]:
    """Write a new store at ``out`` keeping the first frame of each (task, hash) in store order.

    Dropped frames join the shard's existing quarantine as ``duplicate:of <kept id>``.
    Returns {"kept": n, "dropped": n}.
    """
    from omni_data.harmonize.shards import carried_rejections
    from omni_data.schema import Rejected
    from omni_data.store import Store, write_shard

    first: dict[tuple[str, str], str] = {}
    keep: dict[str, str | None] = {}  # row key -> None (keep) or kept id
    for store, shard, rid, task, h in zip(
        *(table.column(c).to_pylist() for c in ("store", "shard", "id", "task", "hash"))
    ):
        kept = first.setdefault((task, h), rid)
        keep[f"{store}\x00{shard}\x00{rid}"] = None if kept == rid else kept
    counts = {"kept": 0, "dropped": 0}
    for k, path in enumerate(store_paths):
        src = Store(path)
        for shard in src.shard_names:
            records, rejected = [], carried_rejections(src, shard)
            n_carried = len(rejected)
            for rec in src.iter_shard(shard):
                kept = keep[f"{path}\x00{shard}\x00{rec.id}"]
                if kept is None:
                    records.append(rec)
                else:
                    rejected.append(
                        Rejected(
                            rec.source_file,
                            rec.source_index,
                            f"duplicate:of {kept}",
                            rec.dataset,
                            rec.id,
                            {"task": rec.task},
                        )
                    )
            name = shard if len(store_paths) == 1 else f"s{k}-{shard}"
            write_shard(out, name, records, rejected)
            counts["kept"] += len(records)
            counts["dropped"] += len(rejected) - n_carried
    return counts
