"""``Store``: read a store directory -- random access by global index or id, views, tables.

Only shards in ``catalog.json`` are visible; ``refresh()`` picks up shards added since (an ingest
may be running). Shard handles open lazily, once per process (a fork is detected through
``os.register_at_fork``, a new process by its pid) and are dropped when pickled, so a Store can
be handed to DataLoader or Dask workers. At most ``max_open`` LMDB shards are open at once
(least recently used closed first), so file descriptors and maps stay bounded however many
shards a store has. ``store[i]``: ``bisect`` on the shard ends, the shard's read transaction,
one checked decode (``codec.py``).
"""

from __future__ import annotations

import bisect
import operator
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from omni_data.schema import Record
from omni_data.store.catalog import Catalog
from omni_data.store.columns import quarantine_table, shard_table, table_schema
from omni_data.store.view import _Base

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Evicted", "Store"]


class Evicted(Exception):
    """An LMDB shard handle closed by its Store's LRU after a thread took it (another thread
    opened one shard too many): the Store opens the shard again and retries."""


BACKENDS = ("lmdb", "arrow")
MAX_OPEN = 64
"""Default bound on LMDB shards open at once per Store (each holds one file descriptor and a map)."""
_bisect_right = bisect.bisect_right

# Bumped in a forked child, so the hot path compares an int instead of calling os.getpid().
_FORK = [0]
os.register_at_fork(after_in_child=lambda: _FORK.__setitem__(0, _FORK[0] + 1))


class Store(_Base):
    """A store directory opened for reading.

    ``max_open``: how many LMDB shards may be open at once (default ``MAX_OPEN``, or the
    ``OMNI_STORE_MAX_OPEN`` environment variable). ``backend`` is kept for callers of store
    format 1: records are always read from LMDB."""

    def __init__(self, path: str | Path, backend: str = "lmdb", max_open: int | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if max_open is None:
            max_open = int(os.environ.get("OMNI_STORE_MAX_OPEN", MAX_OPEN))
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}")
        self.max_open = max_open
        self.path = Path(path)
        if not (self.path / "catalog.json").is_file():
            raise FileNotFoundError(f"{self.path}: not a store (no catalog.json)")
        self.backend = backend
        self.store = self
        catalog = Catalog(self.path, reader=True)
        try:
            self._set_catalog(catalog)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{self.path / 'catalog.json'}: malformed catalog ({type(exc).__name__}: {exc})") from None

    # -- catalog and handles -------------------------------------------------------------
    def _set_catalog(self, catalog: Catalog) -> None:
        self.catalog = catalog
        counts = np.array([s["records"] for s in catalog.shards], dtype=np.int64)
        self._ends = np.cumsum(counts)
        self._starts = self._ends - counts
        self._by_name = {s["name"]: k for k, s in enumerate(catalog.shards)}
        self._ends_list: list[int] = self._ends.tolist()
        self._starts_list: list[int] = self._starts.tolist()
        self._n = int(self._ends[-1]) if len(self._ends) else 0
        self._open: OrderedDict[int, Any] = OrderedDict()  # shard number -> open LmdbShard, LRU order
        self._lock = threading.RLock()  # opening, evicting, and each value's fetch (LmdbShard.raw)
        self._pid, self._fork = os.getpid(), _FORK[0]
        self._ids: Any = None  # the id index (idindex.IdIndex), opened on first get(id)
        self._ids_pid = -1  # the id index (idindex.IdIndex), opened on first get(id)
        self._shard_ids: OrderedDict[int, dict[str, int]] = OrderedDict()  # ids of uncovered shards

    def refresh(self) -> Store:
        """Reload the catalog to see shards added since opening (handles are reopened lazily)."""
        self._close_handles()
        self._set_catalog(Catalog(self.path, reader=True))
        return self

    def _close_handles(self) -> None:
        if getattr(self, "_pid", None) == os.getpid() and getattr(self, "_fork", None) == _FORK[0]:
            for handle in getattr(self, "_open", {}).values():
                handle.close()
            if getattr(self, "_ids", None) is not None and self._ids_pid == os.getpid():
                self._ids.close()
        self._ids, self._ids_pid = None, -1
        self._open = OrderedDict()

    def close(self) -> None:
        """Close every open shard (reading again reopens them)."""
        self._close_handles()

    @property
    def open_shards(self) -> int:
        """How many LMDB shards this Store holds open in this process (at most ``max_open``)."""
        return len(self._open) if self._pid == os.getpid() and self._fork == _FORK[0] else 0

    def __getstate__(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "backend": self.backend,
            "catalog": self.catalog.data,
            "max_open": self.max_open,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = Path(state["path"])
        self.backend = state["backend"]
        self.max_open = state.get("max_open", MAX_OPEN)
        self.store = self
        self._set_catalog(Catalog(self.path, state["catalog"], reader=True))

    def _handle(self, k: int) -> Any:
        """The open LMDB shard ``k`` in this process: opened on first use, most recently used
        last; opening one beyond ``max_open`` closes the least recently used."""
        if self._pid != os.getpid() or self._fork != _FORK[0]:
            # a forked child or a new process: the parent's handles are not ours to use or close
            self._open, self._pid, self._fork = OrderedDict(), os.getpid(), _FORK[0]
            self._ids, self._ids_pid = None, -1
            self._lock = threading.RLock()  # the parent's may have been held at the fork
        with self._lock:  # an RLock: LmdbShard.raw takes it too
            handle = self._open.get(k)
            if handle is not None:
                self._open.move_to_end(k)
                return handle
            from omni_data.store.lmdb import LmdbShard, ShardError

            entry = self.catalog.shards[k]
            meta = entry["files"].get("lmdb")
            if meta is None:
                raise ShardError(f"{self.path}: shard {entry['name']!r} has no LMDB file in the catalog")
            while len(self._open) >= self.max_open:
                old = self._open.popitem(last=False)[1]
                old.evicted = True  # under the lock: no thread is inside old.raw() now
                old.close()
            handle = LmdbShard(self.path / meta["file"], meta, entry["name"], self._lock)
            if len(handle) != entry["records"]:
                handle.close()
                raise ShardError(f"{handle.path}: holds {len(handle)} records, the catalog says {entry['records']}")
            self._open[k] = handle
            return handle

    # -- access ----------------------------------------------------------------------------
    @property
    def shard_names(self) -> list[str]:
        return [s["name"] for s in self.catalog.shards]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> Record:
        if type(i) is not int:
            i = operator.index(i)  # a numpy integer; a float is a TypeError, never truncated
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"{self.path}: index {i} out of range for {self._n} records")
        return self._record(i)

    def _global(self, i: int) -> int:
        return i

    def _globals(self, idx: np.ndarray) -> np.ndarray:
        return idx

    def _indices(self) -> np.ndarray:
        return np.arange(len(self), dtype=np.int64)

    def locate(self, i: int) -> tuple[str, int]:
        """(shard name, row in shard) of global index ``i``."""
        k = int(np.searchsorted(self._ends, i, side="right"))
        return self.catalog.shards[k]["name"], int(i - self._starts[k])

    def _record(self, i: int) -> Record:
        k = _bisect_right(self._ends_list, i)
        handle = self._open.get(k)
        if handle is None or self._fork != _FORK[0]:
            handle = self._handle(k)
        else:
            try:
                self._open.move_to_end(k)
            except KeyError:  # another thread closed it meanwhile
                handle = self._handle(k)
        try:
            return handle.record(i - self._starts_list[k])
        except Evicted:  # closed by another thread's open after we took it: open it again
            return self._retry(k, i - self._starts_list[k])

    def _retry(self, k: int, row: int) -> Record:
        """Read ``row`` of shard ``k`` again after its handle was evicted by another thread."""
        while True:
            try:
                return self._handle(k).record(row)
            except Evicted:
                continue

    def _records(self, glob: np.ndarray) -> list[Record]:
        """Records at global indices ``glob`` (already in range), in that order."""
        if not len(glob):
            return []
        ks = np.searchsorted(self._ends, glob, side="right")
        rows = (glob - self._starts[ks]).tolist()
        ks_list = ks.tolist()
        out: list[Record] = []
        last, handle = -1, cast(Any, None)
        for k, row in zip(ks_list, rows):
            if k != last:
                handle, last = self._handle(k), k
            try:
                out.append(handle.record(row))
            except Evicted:  # another thread's open closed it: open it again
                out.append(self._retry(k, row))
                last = -1
        return out

    def index_of(self, record_id: str) -> int:
        """Global index of ``record_id``; KeyError if it is not in the store.

        One lookup in the store's id index (``idindex.py``) for the shards it covers; shards
        added since the index was last built are asked one by one."""
        from omni_data.store.lmdb import ShardError

        ids = self._id_index()
        try:
            hit = ids.find(record_id)
        except ShardError as exc:
            if "file is missing" not in str(exc):
                raise
            # a segment retired by `index --rebuild` and since deleted: ask the catalog's current ones
            ids.close()
            self._ids, self._ids_pid = None, -1
            from omni_data.store.idindex import IdIndex

            ids = IdIndex(self.path, Catalog(self.path, reader=True), known=self._by_name)
            self._ids, self._ids_pid = ids, os.getpid()
            hit = ids.find(record_id)
        if hit is not None and hit[0] in self._by_name:
            return int(self._starts[self._by_name[hit[0]]] + hit[1])
        dataset = record_id.split(":", 1)[0]  # ids are "<dataset>:<source id>": skip other datasets' shards
        for k, entry in enumerate(self.catalog.shards):
            if entry["name"] in ids.covered or (entry["by_dataset"] and dataset not in entry["by_dataset"]):
                continue
            row = self._ids_of(k).get(record_id)
            if row is not None:
                return int(self._starts[k] + row)
        raise KeyError(f"{self.path}: no record with id {record_id!r}")

    def _ids_of(self, k: int) -> dict[str, int]:
        """id -> row of shard ``k`` from its Parquet ``id`` column (a few cached, LRU)."""
        ids = self._shard_ids.get(k)
        if ids is None:
            column = self._shard_table(k, ["id"]).column("id").to_pylist()
            ids = {record_id: row for row, record_id in enumerate(column)}
            while len(self._shard_ids) >= self.max_open:
                self._shard_ids.popitem(last=False)
            self._shard_ids[k] = ids
        return ids

    def get(self, record_id: str) -> Record:
        """The record with ``record_id`` (KeyError if absent; ``ValueError`` naming the shard and
        row if the index leads to a record with another id: a damaged index)."""
        i = self.index_of(record_id)
        record = self._record(i)
        if record.id != record_id:
            name, row = self.locate(i)
            raise ValueError(
                f"{self.path}: the id index sends {record_id!r} to shard {name!r} row {row}, "
                f"which holds {record.id!r} (damaged id index: run `omni-data index --rebuild`)"
            )
        return record

    def _id_index(self) -> Any:
        """The catalog's id index segments, opened on first use in this process."""
        if self._ids is None or self._ids_pid != os.getpid():
            from omni_data.store.idindex import IdIndex

            self._ids, self._ids_pid = IdIndex(self.path, self.catalog), os.getpid()
        return self._ids

    def iter_shard(self, name: str) -> Iterator[Record]:
        """Every record of shard ``name`` in row order (one cursor scan, each value checked)."""
        try:
            k = self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.path}: no shard {name!r} in the catalog") from None
        yield from self._handle(k).iter_records()

    def __iter__(self) -> Iterator[Record]:
        for name in self.shard_names:
            yield from self.iter_shard(name)

    # -- columns ---------------------------------------------------------------------------
    def _shard_table(self, k: int, columns: Sequence[str] | None) -> pa.Table:
        """Columns of shard ``k`` (``columns.shard_table``: Parquet ones read, others decoded)."""
        entry = self.catalog.shards[k]
        return shard_table(self.path, entry, columns, lambda: self.iter_shard(entry["name"]))

    def table(self, columns: Sequence[str] | None = None, shard: str | None = None) -> pa.Table:
        """A pyarrow Table of ``columns`` (default: the Parquet columns) over the whole store or
        one shard."""
        import pyarrow as pa

        if shard is not None:
            if shard not in self._by_name:
                raise KeyError(f"{self.path}: no shard {shard!r} in the catalog")
            return self._shard_table(self._by_name[shard], columns)
        parts = [self._shard_table(k, columns) for k in range(len(self.catalog.shards))]
        if not parts:
            return table_schema(columns).empty_table()
        return pa.concat_tables(parts)

    def quarantine(self) -> pa.Table:
        """Every quarantined input of catalogued shards (source_file, source_index, reason, ...)."""
        return quarantine_table(self.path, self.catalog.shards)

    def _matching(self, task: Any, dataset: Any) -> np.ndarray:
        """Global indices whose task/dataset match; whole shards are decided from catalog counts."""
        tasks = None if task is None else ({task} if isinstance(task, str) else set(task))
        datasets = None if dataset is None else ({dataset} if isinstance(dataset, str) else set(dataset))
        out: list[np.ndarray] = []
        for k, entry in enumerate(self.catalog.shards):
            verdicts = []
            for wanted, counts in ((tasks, entry["by_task"]), (datasets, entry["by_dataset"])):
                if wanted is None:
                    continue
                hit = sum(c for v, c in counts.items() if v in wanted)
                verdicts.append("all" if hit == entry["records"] else "none" if hit == 0 else "some")
            start = int(self._starts[k])
            if "none" in verdicts or entry["records"] == 0:
                continue
            if all(v == "all" for v in verdicts):
                out.append(np.arange(start, start + entry["records"], dtype=np.int64))
                continue
            cols = self._shard_table(k, ["task", "dataset"])
            mask = np.ones(cols.num_rows, dtype=bool)
            if tasks is not None:
                mask &= np.isin(np.array(cols.column("task").to_pylist(), dtype=object), list(tasks))
            if datasets is not None:
                mask &= np.isin(np.array(cols.column("dataset").to_pylist(), dtype=object), list(datasets))
            out.append(start + np.flatnonzero(mask).astype(np.int64))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
