"""Graphs straight from the store (no conversion step) and the facts training needs from it.

``GraphDataset`` maps positions in a store (or view) to ``Graph`` objects, building each vesin
neighbour list once and caching it. ``split_indices`` picks train/validation records from the
store's ``splits`` section when the harmonisation step wrote one, otherwise by a seeded random
fraction. ``fit_references`` is the fallback when the catalog has no ``references`` section: a
per-task least-squares fit of E ≈ Σ_Z n_Z μ_Z on the training records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .graph import Graph, build_graph, species_table

__all__ = [
    "open_store",
    "store_columns",
    "split_indices",
    "record_graph",
    "GraphDataset",
    "composition_matrix",
    "fit_references",
    "force_rms",
    "avg_num_neighbors",
]


def open_store(path: str | Sequence[str]):
    """The store at ``path``, or several read as one ``StoreSet`` (global index over them in
    order); a clear error naming any path that is not a store."""
    from omni_data.store import open_stores

    return open_stores(path)


def store_columns(store) -> dict[str, np.ndarray]:
    """task, n_atoms and id of every record, from the columnar table (no record decoding)."""
    t = store.table(["id", "task", "n_atoms"])
    return {
        "id": np.array(t.column("id").to_pylist(), dtype=object),
        "task": np.array(t.column("task").to_pylist(), dtype=object),
        "n_atoms": np.asarray(t.column("n_atoms").to_numpy(), dtype=np.int64),
    }


def split_indices(
    store, valid_fraction: float, seed: int, train_split: str = "train", valid_split: str = "val"
) -> tuple[np.ndarray, np.ndarray, str]:
    """(train, valid, how): store split labels when present, else a seeded random fraction."""
    if "splits" in (store.catalog.sections or {}):
        from omni_data.harmonize.splits import split_of

        labels = split_of(store)
        train = np.flatnonzero(labels == train_split)
        valid = np.flatnonzero(labels == valid_split)
        return train, valid, f"store splits ({train_split!r}/{valid_split!r})"
    n = len(store)
    perm = np.random.default_rng(seed).permutation(n)
    n_valid = int(round(valid_fraction * n)) if valid_fraction > 0 else 0
    if valid_fraction > 0 and n > 1:
        n_valid = min(max(n_valid, 1), n - 1)
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid]), f"random {valid_fraction:.0%} (seed {seed})"


def record_graph(record, cutoff: float, table: np.ndarray, task_index: dict[str, int]) -> Graph:
    """Graph of one store record; its task must be one the model knows."""
    if record.task not in task_index:
        raise ValueError(f"record {record.id!r}: task {record.task!r} not in the model's tasks {list(task_index)}")
    pbc = np.asarray(record.pbc, dtype=bool)
    return build_graph(
        record.numbers,
        record.positions,
        record.cell if pbc.any() else None,
        pbc,
        cutoff,
        table,
        task=task_index[record.task],
        energy=record.energy,
        forces=record.forces,
        stress=record.stress,
        weight=record.weight,
        id=record.id,
    )


class GraphDataset:
    """Graphs of the records at ``indices`` of ``store``; each graph is built once if ``cache``."""

    def __init__(
        self,
        store,
        indices: Sequence[int],
        cutoff: float,
        elements: list[int],
        tasks: list[str],
        task_of: np.ndarray | None = None,
        cache: bool = True,
    ) -> None:
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.cutoff = float(cutoff)
        self.table = species_table(elements)
        self.task_index = {t: i for i, t in enumerate(tasks)}
        self.cache: dict[int, Graph] | None = {} if cache else None
        if task_of is None:
            task_of = store_columns(store)["task"]
        unknown = sorted({str(t) for t in task_of[self.indices]} - set(self.task_index))
        if unknown:
            raise ValueError(f"{getattr(store, 'path', store)}: tasks {unknown} are not in the model's tasks {tasks}")
        self.task = np.array([self.task_index[t] for t in task_of[self.indices]], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Graph:
        k = int(k)
        if self.cache is not None and k in self.cache:
            return self.cache[k]
        g = record_graph(self.store[int(self.indices[k])], self.cutoff, self.table, self.task_index)
        if self.cache is not None:
            self.cache[k] = g
        return g

    def graphs(self, ks: Sequence[int]) -> list[Graph]:
        return [self[k] for k in ks]


def composition_matrix(records: Sequence[Any], elements: list[int]) -> np.ndarray:
    """(n_records, n_elements) atom counts per element."""
    col = {z: i for i, z in enumerate(elements)}
    out = np.zeros((len(records), len(elements)))
    for r, rec in enumerate(records):
        for z, c in zip(*np.unique(np.asarray(rec.numbers), return_counts=True)):
            out[r, col[int(z)]] = c
    return out


def fit_references(
    store,
    indices: np.ndarray,
    elements: list[int],
    tasks: list[str],
    task_of: np.ndarray,
    max_records: int = 5000,
    seed: int = 0,
) -> dict[str, dict[int, float]]:
    """Per-task μ_Z by least squares E ≈ Σ n_Z μ_Z over the elements each task's records contain.

    An element a task never contains gets no entry (not a made-up 0): the model's shift for it
    starts at 0 and ``omni_model.evaluation.references`` warns when that head predicts it.
    """
    rng = np.random.default_rng(seed)
    refs: dict[str, dict[int, float]] = {}
    for task in tasks:
        idx = indices[task_of[indices] == task]
        if len(idx) > max_records:
            idx = rng.choice(idx, max_records, replace=False)
        recs = [store[int(i)] for i in idx]
        recs = [r for r in recs if r.energy is not None]
        if not recs:
            refs[task] = {}
            continue
        a = composition_matrix(recs, elements)
        present = np.flatnonzero(a.sum(axis=0) > 0)
        e = np.array([r.energy for r in recs])
        mu, *_ = np.linalg.lstsq(a[:, present], e, rcond=None)
        refs[task] = {elements[j]: float(m) for j, m in zip(present, mu)}
    return refs


def force_rms(dataset: GraphDataset, n_tasks: int, max_graphs: int = 2000) -> np.ndarray:
    """Per-task RMS force component of (up to ``max_graphs``) training graphs; 1.0 if none."""
    sq = np.zeros(n_tasks)
    cnt = np.zeros(n_tasks)
    for k in range(min(len(dataset), max_graphs)):
        g = dataset[k]
        if g.forces is not None:
            sq[g.task] += float(np.square(g.forces).sum())
            cnt[g.task] += g.forces.size
    return np.where(cnt > 0, np.sqrt(sq / np.maximum(cnt, 1)), 1.0)


def avg_num_neighbors(dataset: GraphDataset, max_graphs: int = 2000) -> float:
    """Mean number of neighbours per atom over (up to ``max_graphs``) training graphs."""
    edges = atoms = 0
    for k in range(min(len(dataset), max_graphs)):
        g = dataset[k]
        edges += len(g.src)
        atoms += len(g.species)
    return max(edges / max(atoms, 1), 1.0)
