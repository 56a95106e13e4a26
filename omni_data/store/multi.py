"""``StoreSet``: several stores read as one (one store per database, one model on all of them).

Global index ``i`` runs over the members in the order given: member ``k`` holds indices
``offsets[k] .. offsets[k] + len(member k)``, found by a ``bisect`` on the cumulative offsets.
The reading API is the one of :class:`~omni_data.store.Store` (``len``, ``[i]``, ``get_many``,
``get``, ``iter``, ``select``, ``table``, ``to_atoms``, ``catalog``), so the trainer, evaluate
and the harmonize readers (``load_references``, ``split_of``) take either.

Duplicate ids are checked **on open**, cheaply: ids are ``"<dataset>:<source id>"`` (the
convention ``Store.index_of`` already relies on), so only members whose catalogs share a dataset
can collide, and only the ``id`` columns of their shards holding that dataset are compared.
A repeated id raises ``ValueError`` naming the id and both stores. ``get(id)`` also refuses an
id found in two members. Ids breaking the prefix convention are not compared across datasets.

``catalog`` merges the members' catalogs: ``counts`` are summed; ``sections["references"]`` is
the union of the per-task references (a task whose references differ between two members is a
``ValueError`` naming both stores and the task); ``sections["splits"]`` exists only when every
member has one (``{"stores": {path: section}, "counts": summed}``). Other sections are not merged:
read them from ``catalog.members``.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from omni_data.schema import Record
from omni_data.store.catalog import Catalog
from omni_data.store.reader import Store
from omni_data.store.view import StoreView, _Base

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "merged_counts",
    "merged_references",
    "MultiCatalog",
    "StoreSet",
    "StoreSetView",
    "check_unique_ids",
    "open_stores",
]

REFERENCE_TOLERANCE = 1e-9  # eV: two members "agree" on a task's μ_Z within this
_SUMMED = ("records", "atoms", "shards", "quarantined")
_COUNTERS = ("by_task", "by_dataset", "by_element", "quarantined_by_reason")


def merged_counts(catalogs: Sequence[Catalog]) -> dict[str, Any]:
    """The members' ``counts`` summed key by key (the same keys as one store's counts)."""
    out: dict[str, Any] = {k: 0 for k in _SUMMED}
    counters: dict[str, Counter[str]] = {k: Counter() for k in _COUNTERS}
    for cat in catalogs:
        for k in _SUMMED:
            out[k] += int(cat.counts.get(k, 0))
        for k in _COUNTERS:
            counters[k].update(cat.counts.get(k, {}))
    out.update({k: dict(sorted(c.items())) for k, c in counters.items()})
    return out


def _same_mu(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ma, mb = a.get("mu", {}), b.get("mu", {})
    if set(ma) != set(mb):
        return False
    return all(abs(float(ma[z]) - float(mb[z])) <= REFERENCE_TOLERANCE for z in ma)


def merged_references(
    paths: Sequence[Path], catalogs: Sequence[Catalog]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(per-task references section, {task: [member paths it came from]}) over the members
    that have a ``references`` section; two members with different μ for one task is an error."""
    merged: dict[str, Any] = {}
    sources: dict[str, list[str]] = {}
    for path, cat in zip(paths, catalogs):
        section = (cat.sections or {}).get("references")
        if section is None:
            continue
        for task, entry in section.items():
            if task in merged and not _same_mu(merged[task], entry):
                raise ValueError(
                    f"stores {sources[task][0]} and {path} disagree on the references of task "
                    f"{task!r}; fit them once over both (`omni-data references`) or drop one"
                )
            merged.setdefault(task, entry)
            sources.setdefault(task, []).append(str(path))
    return merged, sources


class MultiCatalog:
    """The merged catalog of a StoreSet: ``counts``, ``sections``, ``shards``, ``members``."""

    def __init__(self, paths: Sequence[Path], catalogs: Sequence[Catalog]):
        self.paths = tuple(paths)
        self.members = tuple(catalogs)
        self.counts = merged_counts(catalogs)
        self.sections: dict[str, Any] = {}
        refs, self.reference_sources = merged_references(paths, catalogs)
        if refs:
            self.sections["references"] = refs
        splits = [(cat.sections or {}).get("splits") for cat in catalogs]
        if catalogs and all(s is not None for s in splits):
            total: Counter[str] = Counter()
            for s in splits:
                total.update((s or {}).get("counts", {}))
            self.sections["splits"] = {"stores": {str(p): s for p, s in zip(paths, splits)}, "counts": dict(total)}

    @property
    def shards(self) -> list[dict[str, Any]]:
        """Every member's shard entries, members in order, each with ``store`` (its path) added."""
        return [{**s, "store": str(p)} for p, cat in zip(self.paths, self.members) for s in cat.shards]

    def update_section(self, name: str, value: Any) -> None:
        raise TypeError(f"{self.paths}: a StoreSet is read-only; write section {name!r} to one member store")


class StoreSet(_Base):
    """Several stores read as one: global index over the members in the order given."""

    def __init__(self, paths: Sequence[str | Path], backend: str = "lmdb", max_open: int | None = None):
        """``max_open``: LMDB shards open at once over all members (default ``reader.MAX_OPEN``
        or ``OMNI_STORE_MAX_OPEN``), shared out evenly, at least one per member."""
        given = [paths] if isinstance(paths, (str, Path)) else list(paths)
        members = [Path(p) for p in given]
        if not members:
            raise ValueError("StoreSet needs at least one store path")
        seen: dict[Path, Path] = {}
        for p in members:
            real = p.resolve()
            if real in seen:
                raise ValueError(f"store {p} is given twice (also as {seen[real]})")
            seen[real] = p
        if max_open is None:
            import os

            from omni_data.store.reader import MAX_OPEN

            max_open = int(os.environ.get("OMNI_STORE_MAX_OPEN", MAX_OPEN))
        each = max(1, max_open // len(members))
        self.stores: tuple[Store, ...] = tuple(Store(p, backend=backend, max_open=each) for p in members)
        self.path = tuple(members)
        self.store = self
        self._refresh_offsets()
        check_unique_ids(self.stores)

    def _refresh_offsets(self) -> None:
        sizes = [len(s) for s in self.stores]
        self._ends = np.cumsum(np.asarray(sizes, dtype=np.int64))
        self._starts = self._ends - np.asarray(sizes, dtype=np.int64)
        self._ends_list: list[int] = self._ends.tolist()
        self._n = int(self._ends[-1])
        self.catalog = MultiCatalog(self.path, [s.catalog for s in self.stores])

    def refresh(self) -> StoreSet:
        """Reload every member's catalog (shards added since opening), re-checking ids."""
        for s in self.stores:
            s.refresh()
        self._refresh_offsets()
        check_unique_ids(self.stores)
        return self

    def close(self) -> None:
        for s in self.stores:
            s.close()

    # -- index mapping ---------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def locate_store(self, i: int) -> tuple[int, int]:
        """(member number, index within that member) of global index ``i`` (in range)."""
        k = bisect.bisect_right(self._ends_list, int(i))
        return k, int(i) - int(self._starts[k])

    def locate(self, i: int) -> tuple[str, int]:
        """(shard name, row in shard) of global index ``i``; the member is ``locate_store``'s."""
        k, j = self.locate_store(i)
        return self.stores[k].locate(j)

    def _global(self, i: int) -> int:
        return i

    def _globals(self, idx: np.ndarray) -> np.ndarray:
        return idx

    def _indices(self) -> np.ndarray:
        return np.arange(self._n, dtype=np.int64)

    def _record(self, i: int) -> Record:
        k, j = self.locate_store(i)
        return self.stores[k][j]

    def _records(self, glob: np.ndarray) -> list[Record]:
        if not len(glob):
            return []
        ks = np.searchsorted(self._ends, glob, side="right")
        out: list[Record | None] = [None] * len(glob)
        for k in np.unique(ks).tolist():
            pos = np.flatnonzero(ks == k)
            for p, rec in zip(pos.tolist(), self.stores[k].get_many(glob[pos] - self._starts[k])):
                out[p] = rec
        return out  # type: ignore[return-value]

    # -- by id, iteration, columns ---------------------------------------------------------
    def index_of(self, record_id: str) -> int:
        """Global index of ``record_id``; KeyError if absent, ValueError if in two members."""
        hits = []
        for k, s in enumerate(self.stores):
            try:
                hits.append((k, s.index_of(record_id)))
            except KeyError:
                continue
        if not hits:
            raise KeyError(f"{', '.join(map(str, self.path))}: no record with id {record_id!r}")
        if len(hits) > 1:
            raise ValueError(
                f"duplicate id {record_id!r} in stores {self.path[hits[0][0]]} and {self.path[hits[1][0]]}"
            )
        k, j = hits[0]
        return int(self._starts[k]) + j

    def get(self, record_id: str) -> Record:
        """The record with ``record_id`` (KeyError if absent)."""
        return self._record(self.index_of(record_id))

    def __iter__(self) -> Iterator[Record]:
        for s in self.stores:
            yield from s

    @property
    def shard_names(self) -> list[str]:
        """``"<member number>/<shard>"`` for every shard (names alone may repeat across members)."""
        return [f"{k}/{n}" for k, s in enumerate(self.stores) for n in s.shard_names]

    def table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The members' tables of ``columns`` concatenated, in global index order."""
        import pyarrow as pa

        return pa.concat_tables([s.table(columns) for s in self.stores])

    def quarantine(self) -> pa.Table:
        """Every member's quarantined inputs, with a ``store`` column naming the member."""
        import pyarrow as pa

        parts = []
        for p, s in zip(self.path, self.stores):
            q = s.quarantine()
            parts.append(q.append_column("store", pa.array([str(p)] * q.num_rows, pa.string())))
        return pa.concat_tables(parts)

    def _matching(self, task: Any, dataset: Any) -> np.ndarray:
        parts = [int(self._starts[k]) + s._matching(task, dataset) for k, s in enumerate(self.stores)]
        return np.concatenate(parts)

    def select(
        self, task: str | Sequence[str] | None = None, dataset: str | Sequence[str] | None = None
    ) -> StoreSetView:
        """The records whose task and dataset match (a name or a list of names); same API."""
        return StoreSetView(self, self._matching(task, dataset))  # type: ignore[arg-type]  # a StoreSet reads like a Store

    def __repr__(self) -> str:
        return f"StoreSet({[str(p) for p in self.path]!r}, records={self._n})"


class StoreSetView(StoreView):
    """A subset of a StoreSet (from ``select``) with the same reading API as ``StoreView``."""

    @property
    def path(self) -> tuple[Path, ...]:
        return self.store.path

    @property
    def shard_names(self) -> list[str]:
        """``"<member number>/<shard>"`` of the shards holding this selection's records."""
        members = np.searchsorted(self.store._ends, self.indices, side="right")
        names = []
        for k in np.unique(members):
            member = self.store.stores[int(k)]
            local = self.indices[members == k] - self.store._starts[k]
            shards = np.unique(np.searchsorted(member._ends, local, side="right"))
            names += [f"{int(k)}/{member.shard_names[int(j)]}" for j in shards]
        return names

    def select(self, task: Any = None, dataset: Any = None) -> StoreSetView:
        keep = self.store._matching(task, dataset)
        return StoreSetView(self.store, self.indices[np.isin(self.indices, keep, assume_unique=True)])


def _shards_with(store: Store, datasets: set[str]) -> list[str]:
    """Shards of ``store`` that may hold a record of ``datasets`` (from catalog counts)."""
    return [s["name"] for s in store.catalog.shards if not s.get("by_dataset") or datasets & set(s["by_dataset"])]


def check_unique_ids(stores: Sequence[Store]) -> None:
    """Raise ValueError naming the id and both stores if two members share a record id.

    Only members whose catalogs share a dataset are compared (ids carry their dataset as a
    prefix), and only the ``id`` column of their shards holding a shared dataset is read.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    datasets = [set(s.catalog.counts.get("by_dataset", {})) for s in stores]
    for a in range(len(stores)):
        for b in range(a + 1, len(stores)):
            shared = datasets[a] & datasets[b]
            if not shared:
                continue
            ids = [
                pa.concat_tables([st.table(["id"], shard=n) for n in _shards_with(st, shared)]).column("id")
                for st in (stores[a], stores[b])
            ]
            dup = pc.filter(ids[1], pc.is_in(ids[1], value_set=ids[0].combine_chunks()))
            if len(dup):
                raise ValueError(
                    f"duplicate id {dup[0].as_py()!r} in stores {stores[a].path} and {stores[b].path} "
                    "(each record may come from one member only; see `omni-data dedup`)"
                )


def open_stores(
    path_or_paths: str | Path | Sequence[str | Path], backend: str = "lmdb", max_open: int | None = None
) -> Store | StoreSet:
    """A ``Store`` for one path (or a one-element list), a ``StoreSet`` for several.

    Every path must be a store directory: ``FileNotFoundError`` names the first that is not.
    """
    paths = [path_or_paths] if isinstance(path_or_paths, (str, Path)) else list(path_or_paths)
    if not paths:
        raise ValueError("no store path given")
    for p in paths:
        if not isinstance(p, (str, Path)) or not str(p):
            raise ValueError(f"store path must be a non-empty string, got {p!r}")
        if not (Path(p) / "catalog.json").is_file():
            raise FileNotFoundError(f"{p}: not an Omni store (no catalog.json)")
    if len(paths) == 1:
        return Store(paths[0], backend=backend, max_open=max_open)
    return StoreSet(paths, backend=backend, max_open=max_open)
