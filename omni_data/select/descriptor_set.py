"""All descriptor rows of one or more stores, with id, task, dataset, store and shard per row.

Rows are in store order, then shard order, then row order inside the shard: the global index
used by FPS. Vectors are loaded on demand (``vectors(rows)``), so distributed selection can
keep only ids and tasks in memory and let each Dask task load its own shard.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omni_data.select.sidecars import load_shard, load_shard_ids, load_shard_rows, load_shard_x

__all__ = ["ShardRef", "DescriptorSet", "load_descriptor_set"]


@dataclass
class ShardRef:
    store: str
    shard: str
    offset: int  # global row of the shard's first row
    n: int


@dataclass
class DescriptorSet:
    """Ids, tasks, datasets and stores of every row; vectors through ``vectors()``/``x``."""

    kind: str
    ids: np.ndarray
    tasks: np.ndarray
    datasets: np.ndarray
    store_of: np.ndarray
    shards: list[ShardRef]
    _x: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def x(self) -> np.ndarray:
        """All vectors (n, d) float32, loaded once."""
        if self._x is None:
            parts = [load_shard_x(s.store, self.kind, s.shard) for s in self.shards]
            self._x = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        return self._x

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Vectors of some rows, loading only the shards they live in."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._x is not None:
            return self._x[rows]
        out: np.ndarray | None = None
        for s in self.shards:
            inside = (rows >= s.offset) & (rows < s.offset + s.n)
            if inside.any():
                part = load_shard_x(s.store, self.kind, s.shard)[rows[inside] - s.offset]
                if out is None:
                    out = np.empty((len(rows), part.shape[1]), dtype=np.float32)
                out[inside] = part
        if out is None:
            raise ValueError("no rows requested")
        return out

    def loader(self, shard: ShardRef, local_rows: np.ndarray | None = None):
        """Picklable ``() -> vectors`` of one shard, or of some of its rows (for Dask tasks)."""
        if local_rows is None:
            return functools.partial(load_shard_x, shard.store, self.kind, shard.shard)
        return functools.partial(load_shard_rows, shard.store, self.kind, shard.shard, local_rows)


def load_descriptor_set(stores: Sequence[str | Path], kind: str = "rdf", with_vectors: bool = True) -> DescriptorSet:
    """Read ids/tasks/datasets from the stores and check every shard's sidecar matches them."""
    from omni_data.store import Store

    ids, tasks, datasets, store_of, shards = [], [], [], [], []
    xs: list[np.ndarray] = []
    offset = 0
    seen: set[str] = set()
    for path in stores:
        key = str(Path(path).resolve())
        if key in seen:
            raise ValueError(f"store {path} given twice")
        seen.add(key)
        store = Store(path)
        for shard in store.shard_names:
            table = store.table(["id", "task", "dataset"], shard=shard)
            sid = np.asarray(table.column("id").to_pylist(), dtype=str)
            if with_vectors:
                x, side_ids = load_shard(Path(path), kind, shard)
                xs.append(x)
            else:
                side_ids = load_shard_ids(Path(path), kind, shard)
            if not np.array_equal(side_ids, sid):
                raise ValueError(
                    f"{path}: shard {shard!r}: {kind} descriptors are stale (ids differ "
                    f"from the shard); delete the sidecar and run omni-data describe"
                )
            ids.append(sid)
            tasks.append(np.asarray(table.column("task").to_pylist(), dtype=str))
            datasets.append(np.asarray(table.column("dataset").to_pylist(), dtype=str))
            store_of.append(np.full(len(sid), str(path), dtype=object))
            shards.append(ShardRef(str(path), shard, offset, len(sid)))
            offset += len(sid)
    if not shards:
        raise ValueError(f"no shards in {list(map(str, stores))}")
    cat = np.concatenate
    dims = {x.shape[1] for x in xs}
    if len(dims) > 1:
        raise ValueError(f"{kind} descriptors of different lengths {sorted(dims)} across stores")
    all_ids = cat(ids)
    uniq, counts = np.unique(all_ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"record ids appear in more than one place, e.g. {uniq[counts > 1][:3].tolist()}")
    return DescriptorSet(
        kind, all_ids, cat(tasks), cat(datasets), cat(store_of).astype(str), shards, cat(xs) if with_vectors else None
    )
