"""What a ``Store`` and its views share: reading records through global indices, and views.

``_Base`` gives ``store[i]``, ``get_many`` (a DataLoader's ``__getitems__``), ``to_atoms`` and
``select``; a subclass maps its own indices to the store's (``_global``, ``_globals``,
``_indices``). ``StoreView`` is a subset of a store from ``select``, with the same reading API.
Opening shards and decoding records stays in ``reader.py``; ``multi.py`` reuses both for a set
of stores.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from omni_data.schema import Record
from omni_data.store.catalog import Catalog

if TYPE_CHECKING:
    import pyarrow as pa
    from ase import Atoms

    from omni_data.store.reader import Store

__all__ = ["StoreView"]


class _Base:
    """What a Store and a view of it share: access through global indices."""

    store: Any  # the Store (or StoreSet) whose records this object reads

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def _global(self, i: int) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def __getitem__(self, i: int) -> Record:
        n = len(self)
        i = operator.index(i)  # an int or numpy integer; a float is a TypeError, never truncated
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{self.store.path}: index {i} out of range for {n} records")
        return self.store._record(self._global(i))

    def get_many(self, indices: Sequence[int] | np.ndarray) -> list[Record]:
        """Records at ``indices`` (negative counts from the end), in the order given.

        Same records as ``[self[i] for i in indices]``, faster with the C decoder (one call per
        shard reads and decodes the batch, no Python frame per record); it checks every index
        before reading any and finds all shards with one ``searchsorted``. A DataLoader uses it
        through ``__getitems__``.
        """
        idx = np.asarray(indices)
        if idx.size and idx.dtype.kind not in "iu":
            raise TypeError(f"{self.store.path}: indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        n = len(self)
        idx = np.where(idx < 0, idx + n, idx)
        bad = np.flatnonzero((idx < 0) | (idx >= n))
        if bad.size:
            raise IndexError(
                f"{self.store.path}: index {int(np.asarray(indices).reshape(-1)[bad[0]])} out of range for {n} records"
            )
        return self.store._records(self._globals(idx))

    def __getitems__(self, indices: Sequence[int]) -> list[Record]:
        """``get_many``: what torch's DataLoader calls for a batch of a map-style dataset."""
        return self.get_many(indices)

    def _globals(self, idx: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_atoms(self, i: int) -> Atoms:
        """``ase.Atoms`` of record ``i`` with a SinglePointCalculator holding its labels."""
        from omni_data.store.atoms import record_to_atoms

        return record_to_atoms(self[i])

    def select(self, task: str | Sequence[str] | None = None, dataset: str | Sequence[str] | None = None) -> StoreView:
        """The records whose task and dataset match (a name or a list of names); same API."""
        keep = self.store._matching(task, dataset)
        mine = self._indices()
        return StoreView(self.store, mine[np.isin(mine, keep, assume_unique=True)])

    def _indices(self) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


class StoreView(_Base):
    """A subset of a Store (from ``select``) with the same reading API."""

    def __init__(self, store: Store, indices: np.ndarray):
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def _global(self, i: int) -> int:
        return int(self.indices[i])

    def _globals(self, idx: np.ndarray) -> np.ndarray:
        return self.indices[idx]

    def _indices(self) -> np.ndarray:
        return self.indices

    @property
    def catalog(self) -> Catalog:
        return self.store.catalog

    @property
    def shard_names(self) -> list[str]:
        names = self.store.shard_names
        ks = np.unique(np.searchsorted(self.store._ends, self.indices, side="right"))
        return [names[int(k)] for k in ks]

    def get(self, record_id: str) -> Record:
        i = self.store.index_of(record_id)
        pos = int(np.searchsorted(self.indices, i))
        if pos >= len(self.indices) or self.indices[pos] != i:
            raise KeyError(f"{self.store.path}: record {record_id!r} is not in this selection")
        return self.store._record(i)

    def __iter__(self) -> Iterator[Record]:
        for i in self.indices:
            yield self.store._record(int(i))

    def table(self, columns: Sequence[str] | None = None) -> pa.Table:
        return self.store.table(columns).take(self.indices)
