"""Earlier selections (``--exclude``): their ids, the store each came from, and their vectors,
which become the FPS seeds of the next round (so a second round extends the first)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from omni_data.select.descriptor_set import DescriptorSet, load_descriptor_set

__all__ = ["excluded_ids", "seed_vectors"]


def excluded_ids(paths: Sequence[str]) -> tuple[np.ndarray, dict[str, str]]:
    """Ids of earlier selections and the store each came from."""
    import pyarrow.parquet as pq

    ids: list[str] = []
    where: dict[str, str] = {}
    for path in paths:
        table = pq.read_table(path, columns=["id", "store"])
        for rid, store in zip(table.column("id").to_pylist(), table.column("store").to_pylist()):
            ids.append(rid)
            where[rid] = store
    return np.asarray(ids, dtype=str), where


def seed_vectors(ds: DescriptorSet, ids: np.ndarray, where: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``ds`` that are excluded, vectors of all excluded ids incl. other stores)."""
    if len(ids) == 0:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    inside = np.isin(ds.ids, ids)
    rows = np.flatnonzero(inside)
    vecs = [ds.vectors(rows)] if len(rows) else []
    missing = np.setdiff1d(ids, ds.ids[rows])
    if len(missing):
        others = sorted({where[i] for i in missing} - set(ds.store_of.tolist()))
        if not others:
            raise ValueError(f"excluded ids not found in any store, e.g. {missing[:3].tolist()}")
        extra = load_descriptor_set(others, ds.kind, with_vectors=True)
        found = np.isin(extra.ids, missing)
        if found.sum() != len(missing):
            lost = np.setdiff1d(missing, extra.ids[found])
            raise ValueError(f"excluded ids not found in {others}, e.g. {lost[:3].tolist()}")
        vecs.append(extra.x[found])
    return rows, np.concatenate(vecs).astype(np.float32)
