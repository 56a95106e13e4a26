"""``Store``: read a store directory -- random access by global index or id, views, tables.

Only shards in ``catalog.json`` are visible; ``refresh()`` picks up shards added since (an ingest
may be running). Shard handles open lazily, once per process (a fork is detected through
``os.register_at_fork``, a new process by its pid) and are dropped when pickled, so a Store can
be handed to DataLoader or Dask workers. ``store[i]`` is the hot path of training: shard lookup
by ``bisect`` on a cached list, the shard's per-thread read transaction, one decode;
``get_many(indices)`` reads a batch (indices checked first, one vectorised shard lookup).
"""
from __future__ import annotations

import bisect
import operator
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from omni_data.schema import Record
from omni_data.store.catalog import Catalog

if TYPE_CHECKING:
    import pyarrow as pa
    from ase import Atoms

BACKENDS = ("lmdb", "arrow")
_bisect_right = bisect.bisect_right

# Bumped in a forked child, so the hot path compares an int instead of calling os.getpid().
_FORK = [0]
os.register_at_fork(after_in_child=lambda: _FORK.__setitem__(0, _FORK[0] + 1))


class _Base:
    """What a Store and a view of it share: access through global indices."""

    store: "Store"

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
            raise IndexError(f"{self.store.path}: index {int(np.asarray(indices).reshape(-1)[bad[0]])} "
                             f"out of range for {n} records")
        return self.store._records(self._globals(idx))

    def __getitems__(self, indices: Sequence[int]) -> list[Record]:
        """``get_many``: what torch's DataLoader calls for a batch of a map-style dataset."""
        return self.get_many(indices)

    def _globals(self, idx: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_atoms(self, i: int) -> "Atoms":
        """``ase.Atoms`` of record ``i`` with a SinglePointCalculator holding its labels."""
        from omni_data.store.atoms import record_to_atoms

        return record_to_atoms(self[i])

    def select(self, task: str | Sequence[str] | None = None, dataset: str | Sequence[str] | None = None) -> "StoreView":
        """The records whose task and dataset match (a name or a list of names); same API."""
        keep = self.store._matching(task, dataset)
        mine = self._indices()
        return StoreView(self.store, mine[np.isin(mine, keep, assume_unique=True)])

    def _indices(self) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


def _fast_bases() -> tuple[type, ...]:
    """``(_fastcodec.StoreIndex,)`` when the C decoder is in use: ``store[i]`` then runs in C
    for the common case and calls ``Store._getitem`` for everything else; else ``()``."""
    from omni_data.store import codec

    if not codec.ACCELERATED:
        return ()
    from omni_data.store import arrow as arrow_shards
    from omni_data.store import lmdb as lmdb_shards

    codec._fastcodec.configure_store(_FORK, lmdb_shards._FORK, lmdb_shards.LmdbShard, arrow_shards.ArrowShard)
    return (codec._fastcodec.StoreIndex,)


_FAST_BASES = _fast_bases()


class Store(_Base, *_FAST_BASES):
    """A store directory opened for reading; ``backend`` picks LMDB (default) or Arrow for rows."""

    def __init__(self, path: str | Path, backend: str = "lmdb"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.path = Path(path)
        if not (self.path / "catalog.json").is_file():
            raise FileNotFoundError(f"{self.path}: not a store (no catalog.json)")
        self.backend = backend
        self.store = self
        self._set_catalog(Catalog(self.path, reader=True))

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
        self._handles: dict[tuple[str, str], Any] = {}
        self._rows: list[Any] = [None] * len(catalog.shards)  # default-backend handle per shard
        self._pid, self._fork = os.getpid(), _FORK[0]
        self._ids, self._ids_pid = None, -1  # the id index (idindex.IdIndex), opened on first get(id)
        self._fast_reset()  # StoreIndex's cached shard ends and read transactions

    def refresh(self) -> "Store":
        """Reload the catalog to see shards added since opening (handles are reopened lazily)."""
        self._close_handles()
        self._set_catalog(Catalog(self.path, reader=True))
        return self

    def _close_handles(self) -> None:
        if getattr(self, "_pid", None) == os.getpid() and getattr(self, "_fork", None) == _FORK[0]:
            for handle in getattr(self, "_handles", {}).values():
                if hasattr(handle, "close"):
                    handle.close()
            if getattr(self, "_ids", None) is not None and self._ids_pid == os.getpid():
                self._ids.close()
        self._ids, self._ids_pid = None, -1
        self._fast_reset()
        self._handles = {}
        self._rows = [None] * len(self.catalog.shards) if hasattr(self, "catalog") else []

    def close(self) -> None:
        self._close_handles()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "backend": self.backend, "catalog": self.catalog.data}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = Path(state["path"])
        self.backend = state["backend"]
        self.store = self
        self._set_catalog(Catalog(self.path, state["catalog"], reader=True))

    def _handle(self, k: int, backend: str | None = None) -> Any:
        """The open shard ``k`` for ``backend`` in this process (opened on first use)."""
        if self._pid != os.getpid() or self._fork != _FORK[0]:
            self._handles, self._pid, self._fork = {}, os.getpid(), _FORK[0]
            self._rows = [None] * len(self.catalog.shards)
            self._fast_reset()
        entry = self.catalog.shards[k]
        files = entry["files"]
        backend = backend or (self.backend if self.backend in files else next(iter(files)))
        key = (entry["name"], backend)
        handle = self._handles.get(key)
        if handle is None:
            path = self.path / files[backend]["file"]
            if backend == "lmdb":
                from omni_data.store.lmdb import LmdbShard

                handle = LmdbShard(path)
            else:
                from omni_data.store.arrow import ArrowShard

                handle = ArrowShard(path)
            if len(handle) != entry["records"]:
                raise ValueError(f"{path}: holds {len(handle)} records, catalog says {entry['records']}")
            self._handles[key] = handle
        return handle

    # -- access ----------------------------------------------------------------------------
    @property
    def shard_names(self) -> list[str]:
        return [s["name"] for s in self.catalog.shards]

    def __len__(self) -> int:
        return self._n

    def _getitem(self, i: int) -> Record:
        """``store[i]`` in Python: the whole contract (the C ``StoreIndex`` calls it for every
        case it does not take itself). Same as _Base.__getitem__ with the indirections inlined."""
        if type(i) is not int:
            i = operator.index(i)  # a numpy integer; a float is a TypeError, never truncated
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"{self.path}: index {i} out of range for {self._n} records")
        k = _bisect_right(self._ends_list, i)
        handle = self._rows[k]
        if handle is None or self._fork != _FORK[0]:
            handle = self._handle(k)  # may reset self._rows (new process): assign after
            self._rows[k] = handle
        return handle.record(i - self._starts_list[k])

    # store[i]: C (StoreIndex) when built, else the Python method
    __getitem__ = _FAST_BASES[0].__getitem__ if _FAST_BASES else _getitem

    if not _FAST_BASES:
        def _fast_reset(self) -> None:
            """Nothing is cached without the C StoreIndex."""

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
        k = bisect.bisect_right(self._ends_list, i)
        handle = self._rows[k]
        if handle is None or self._fork != _FORK[0]:
            handle = self._handle(k)  # may reset self._rows (new process): assign after
            self._rows[k] = handle
        return handle.record(i - self._starts_list[k])

    def _records(self, glob: np.ndarray) -> list[Record]:
        """Records at global indices ``glob`` (already in range), in that order."""
        if not len(glob):
            return []
        ks = np.searchsorted(self._ends, glob, side="right")
        rows = glob - self._starts[ks]
        shards = np.unique(ks)
        if len(shards) == 1:
            return self._handle(int(shards[0])).records(rows.tolist())
        from omni_data.store import codec

        handles = {k: self._handle(k) for k in shards.tolist()}
        readers = {k: h.reader() for k, h in handles.items()} if codec.read_rows_c is not None else {}
        if readers and all(r is not None for r in readers.values()):
            # rows of several shards in one C call: each row with its shard's reader (an LMDB
            # row table or transaction get, an ArrowRows)
            ks_list, rows_list = ks.tolist(), rows.tolist()
            got = codec.read_rows_c([readers[k] for k in ks_list], rows_list)
            for p, record in enumerate(got):
                if record is None or record is NotImplemented:  # the Python path says why
                    got[p] = handles[ks_list[p]].record(rows_list[p])
            return got
        out: list[Record | None] = [None] * len(glob)
        for k in shards.tolist():  # one call per shard, results put back in the order asked
            pos = np.flatnonzero(ks == k)
            for p, record in zip(pos.tolist(), self._handle(k).records(rows[pos].tolist())):
                out[p] = record
        return out  # type: ignore[return-value]

    def index_of(self, record_id: str) -> int:
        """Global index of ``record_id``; KeyError if it is not in the store.

        One lookup in the store's id index (``idindex.py``) for the shards it covers; shards
        added since the index was last built are asked one by one."""
        ids = self._id_index()
        hit = ids.find(record_id)
        if hit is not None and hit[0] in self._by_name:
            return int(self._starts[self._by_name[hit[0]]] + hit[1])
        dataset = record_id.split(":", 1)[0]  # ids are "<dataset>:<source id>": skip other datasets' shards
        for k, entry in enumerate(self.catalog.shards):
            if entry["name"] in ids.covered or (entry["by_dataset"] and dataset not in entry["by_dataset"]):
                continue
            # LMDB has an id index (one B-tree lookup); Arrow builds a dict on first use.
            row = self._handle(k, "lmdb" if "lmdb" in entry["files"] else "arrow").find(record_id)
            if row is not None:
                return int(self._starts[k] + row)
        raise KeyError(f"{self.path}: no record with id {record_id!r}")

    def get(self, record_id: str) -> Record:
        """The record with ``record_id`` (KeyError if absent)."""
        return self._record(self.index_of(record_id))

    def _id_index(self) -> Any:
        """The catalog's id index segments, opened on first use in this process."""
        if self._ids is None or self._ids_pid != os.getpid():
            from omni_data.store.idindex import IdIndex

            self._ids, self._ids_pid = IdIndex(self.path, self.catalog), os.getpid()
        return self._ids

    def iter_shard(self, name: str) -> Iterator[Record]:
        """Every record of shard ``name`` in row order."""
        try:
            k = self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.path}: no shard {name!r} in the catalog") from None
        handle = self._handle(k)
        if hasattr(handle, "iter_raw"):
            from omni_data.store.codec import decode_record

            for raw in handle.iter_raw():
                yield decode_record(raw)
        else:
            for row in range(len(handle)):
                yield handle.record(row)

    def __iter__(self) -> Iterator[Record]:
        for name in self.shard_names:
            yield from self.iter_shard(name)

    # -- columns ---------------------------------------------------------------------------
    def _shard_table(self, k: int, columns: Sequence[str] | None) -> "pa.Table":
        import pyarrow as pa

        from omni_data.store.arrow import SCALAR_COLUMNS, SCHEMA, read_table

        entry = self.catalog.shards[k]
        if "arrow" in entry["files"]:
            return read_table(self.path / entry["files"]["arrow"]["file"], columns)
        wanted = list(columns) if columns is not None else list(SCALAR_COLUMNS)
        if any(c not in SCALAR_COLUMNS or c == "metadata" for c in wanted):
            from omni_data.store.arrow import records_to_table

            return records_to_table(list(self.iter_shard(entry["name"]))).select(wanted)
        from omni_data.store.codec import decode_header

        rows = [decode_header(raw) for raw in self._handle(k, "lmdb").iter_raw()]
        return pa.table({c: pa.array([r[c] for r in rows], SCHEMA.field(c).type) for c in wanted})

    def table(self, columns: Sequence[str] | None = None, shard: str | None = None) -> "pa.Table":
        """A pyarrow Table of ``columns`` (default all) over the whole store or one shard."""
        import pyarrow as pa

        from omni_data.store.arrow import SCHEMA

        if shard is not None:
            return self._shard_table(self._by_name[shard], columns)
        parts = [self._shard_table(k, columns) for k in range(len(self.catalog.shards))]
        if not parts:
            schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        return pa.concat_tables(parts)

    def quarantine(self) -> "pa.Table":
        """Every quarantined input of catalogued shards (source_file, source_index, reason, ...)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = [pq.read_table(str(self.path / s["quarantine"]["file"]))
                 for s in self.catalog.shards if s.get("quarantine")]
        if parts:
            return pa.concat_tables(parts)
        return pa.schema([(c, pa.string()) for c in ("source_file", "reason", "kind", "dataset", "source_id", "detail", "shard")]
                         ).insert(1, pa.field("source_index", pa.int64())).empty_table()

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

    def table(self, columns: Sequence[str] | None = None) -> "pa.Table":
        return self.store.table(columns).take(self.indices)
