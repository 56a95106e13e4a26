"""The reference-energy fit: per-task elemental energies by streamed least squares (E ≈ Σ_el n_el·μ_el).

Why streamed: a task may hold millions of frames, so the fit never holds the design matrix.
Each shard contributes its normal equations ``AᵀA`` (119×119 over Z = 0..118) and ``Aᵀb``;
shards are summed (a Dask map, then a sum) and the small system is solved once. Memory is
bounded by one shard plus a few 119×119 matrices per task.

The fit is on total energies (the convention of MACE/SevenNet ``E0`` fits). A second, per-atom
set of sums (rows divided by ``N``) gives the per-atom energy spread before and after
subtracting the references in the same single pass.

An element that never occurs in a task gets no reference there: ``solve`` lists it under
``absent``. The per-element table, the catalog section and the fallback rule for absent
elements are in ``harmonize.references``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omni_data.schema import Record

__all__ = [
    "N_Z",
    "RefAccumulator",
    "TaskReferences",
    "accumulate",
    "accumulate_table",
    "element_counts",
    "element_status",
    "fit_store",
    "merge_all",
    "shard_accumulators",
    "solve",
    "solve_all",
]

N_Z = 119  # atomic numbers 0..118; column 0 stays empty
# Eigenvalue / largest eigenvalue of the column-normalised AᵀA (unit diagonal) below which a
# direction of μ is not determined (exact collinearity, up to rounding) or is ill-conditioned
# (the design's condition number exceeds ~1000: per-atom noise is amplified a thousandfold).
UNDETERMINED_RATIO = 1e-10
ILL_CONDITIONED_RATIO = 1e-6
FITTED, UNDETERMINED, ILL_CONDITIONED = "fitted", "undetermined", "ill-conditioned"


@dataclass
class RefAccumulator:
    """Sufficient statistics of one task: normal equations plus per-atom and force sums."""

    ata: np.ndarray = field(default_factory=lambda: np.zeros((N_Z, N_Z)))
    atb: np.ndarray = field(default_factory=lambda: np.zeros(N_Z))
    # per-atom rows: ã = counts/N, b̃ = E/N
    pa_ata: np.ndarray = field(default_factory=lambda: np.zeros((N_Z, N_Z)))
    pa_atb: np.ndarray = field(default_factory=lambda: np.zeros(N_Z))
    pa_a: np.ndarray = field(default_factory=lambda: np.zeros(N_Z))
    pa_b: float = 0.0
    pa_bb: float = 0.0
    n_frames: int = 0
    n_atoms: int = 0
    element_frames: np.ndarray = field(default_factory=lambda: np.zeros(N_Z, dtype=np.int64))
    force_sq: float = 0.0
    force_n: int = 0
    n_no_energy: int = 0

    def add_batch(self, counts: np.ndarray, energies: np.ndarray) -> None:
        """Add frames given as element-count rows ``(m, 119)`` and total energies ``(m,)``."""
        counts = np.asarray(counts, dtype=np.float64)
        energies = np.asarray(energies, dtype=np.float64)
        if counts.shape[0] == 0:
            return
        n = counts.sum(axis=1)
        cols = np.flatnonzero(counts.any(axis=0))  # products over present elements only
        block = np.ix_(cols, cols)
        c = counts[:, cols]
        self.ata[block] += c.T @ c
        self.atb[cols] += c.T @ energies
        pa = c / n[:, None]
        pb = energies / n
        self.pa_ata[block] += pa.T @ pa
        self.pa_atb[cols] += pa.T @ pb
        self.pa_a[cols] += pa.sum(axis=0)
        self.pa_b += float(pb.sum())
        self.pa_bb += float(pb @ pb)
        self.n_frames += int(counts.shape[0])
        self.n_atoms += int(n.sum())
        self.element_frames[cols] += (c > 0).sum(axis=0)

    def add_forces(self, forces: np.ndarray) -> None:
        """Add force components (any shape) to the force RMS sums."""
        f = np.asarray(forces, dtype=np.float64)
        self.force_sq += float((f * f).sum())
        self.force_n += int(f.size)

    def merge(self, other: RefAccumulator) -> RefAccumulator:
        """Sum of two accumulators (in place on self, which is returned)."""
        for name in ("ata", "atb", "pa_ata", "pa_atb", "pa_a", "element_frames"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("pa_b", "pa_bb", "n_frames", "n_atoms", "force_sq", "force_n", "n_no_energy"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


def element_counts(numbers: np.ndarray) -> np.ndarray:
    """Counts of each atomic number as a length-119 vector."""
    return np.bincount(np.asarray(numbers, dtype=np.int64), minlength=N_Z)[:N_Z]


def accumulate(records: Iterable[Record], batch: int = 4096) -> dict[str, RefAccumulator]:
    """Per-task accumulators over ``records`` (frames without energy count only for forces)."""
    accs: dict[str, RefAccumulator] = {}
    pending: dict[str, tuple[list[np.ndarray], list[float]]] = {}

    def flush(task: str) -> None:
        rows, energies = pending.pop(task)
        if rows:
            accs[task].add_batch(np.stack(rows), np.asarray(energies))

    for rec in records:
        acc = accs.setdefault(rec.task, RefAccumulator())
        if rec.forces is not None:
            acc.add_forces(rec.forces)
        if rec.energy is None:
            acc.n_no_energy += 1
            continue
        rows, energies = pending.setdefault(rec.task, ([], []))
        rows.append(element_counts(rec.numbers))
        energies.append(float(rec.energy))
        if len(rows) >= batch:
            flush(rec.task)
    for task in list(pending):
        flush(task)
    return accs


def merge_all(parts: Iterable[Mapping[str, RefAccumulator]]) -> dict[str, RefAccumulator]:
    """Sum per-task accumulators from many shards."""
    total: dict[str, RefAccumulator] = {}
    for part in parts:
        for task, acc in part.items():
            if task in total:
                total[task].merge(acc)
            else:
                total[task] = acc
    return total


@dataclass
class TaskReferences:
    """The fitted references of one task and the spread they remove."""

    task: str
    mu: dict[int, float]
    absent: list[int]
    underdetermined: bool
    rank: int
    n_frames: int
    n_atoms: int
    n_no_energy: int
    force_rms: float | None
    e_per_atom_mean_before: float | None
    e_per_atom_std_before: float | None
    e_per_atom_mean_after: float | None
    e_per_atom_std_after: float | None
    ridge: float
    split: str | None = None  # the split the fit used (None: every record)
    element_frames: dict[int, int] = field(default_factory=dict)  # Z -> structures containing Z
    element_status: dict[int, str] = field(default_factory=dict)  # Z -> fitted/undetermined/ill-conditioned
    collinear: list[list[int]] = field(default_factory=list)  # element sets in a weak direction

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for name in ("mu", "element_frames", "element_status"):
            d[name] = {str(z): v for z, v in sorted(getattr(self, name).items())}
        d["collinear"] = [list(c) for c in self.collinear]
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TaskReferences:
        """The fit from its catalog JSON; sections written before per-element status load too."""
        d = dict(d)
        d["mu"] = {int(z): float(v) for z, v in d["mu"].items()}
        d["element_frames"] = {int(z): int(v) for z, v in (d.get("element_frames") or {}).items()}
        d["element_status"] = {int(z): str(v) for z, v in (d.get("element_status") or {}).items()}
        d["collinear"] = [[int(z) for z in c] for c in d.get("collinear") or []]
        return cls(**d)


def element_status(ata: np.ndarray, present: np.ndarray) -> tuple[dict[int, str], list[list[int]]]:
    """Per present element: ``fitted``, ``undetermined`` or ``ill-conditioned``, and the sets of
    elements that share a weak direction (e.g. ``[[1, 8]]`` for a task holding only water).

    Judged on the unridged normal matrix scaled to unit diagonal, so atom counts and units do
    not matter, only how nearly the elements' counts are proportional across structures.
    """
    m = ata[np.ix_(present, present)]
    d = np.sqrt(np.diag(m))
    w, v = np.linalg.eigh(m / np.outer(d, d))
    status = {int(z): FITTED for z in present}
    sets: list[list[int]] = []
    top = max(float(w.max()), 1e-300)
    for k in np.argsort(w):
        ratio = float(w[k]) / top
        if ratio >= ILL_CONDITIONED_RATIO:
            break
        level = UNDETERMINED if ratio < UNDETERMINED_RATIO else ILL_CONDITIONED
        members = [int(present[i]) for i in np.flatnonzero(np.abs(v[:, k]) > 1e-2)]
        for z in members:
            if status[z] != UNDETERMINED:
                status[z] = level
        if sorted(members) not in sets:
            sets.append(sorted(members))
    return status, sets


def solve(task: str, acc: RefAccumulator, ridge: float = 0.0, store_elements: Iterable[int] = ()) -> TaskReferences:
    """Solve ``min ‖Aμ − b‖² + ridge‖μ‖²`` over the elements present in the task.

    A rank-deficient system (elements that always occur in a fixed ratio, e.g. only water) gets
    the minimum-norm solution and ``underdetermined=True``; ``ridge > 0`` regularises instead.
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    present = np.flatnonzero(acc.element_frames > 0)
    absent = sorted(int(z) for z in set(store_elements) if int(z) not in set(present.tolist()))
    force_rms = math.sqrt(acc.force_sq / acc.force_n) if acc.force_n else None
    if acc.n_frames == 0 or present.size == 0:
        return TaskReferences(
            task, {}, absent, False, 0, 0, 0, acc.n_no_energy, force_rms, None, None, None, None, ridge
        )
    m = acc.ata[np.ix_(present, present)] + ridge * np.eye(present.size)
    rank = int(np.linalg.matrix_rank(m))
    # rcond 1e-12: exactly collinear counts give the minimum-norm solution, not rounding noise
    mu_sub, *_ = np.linalg.lstsq(m, acc.atb[present], rcond=1e-12)
    mu = np.zeros(N_Z)
    mu[present] = mu_sub
    status, collinear = element_status(acc.ata, present)
    n = acc.n_frames
    mean_before = acc.pa_b / n
    var_before = max(acc.pa_bb / n - mean_before**2, 0.0)
    # residual r = b̃ − ãμ, from the per-atom sums without a second pass
    mean_after = (acc.pa_b - acc.pa_a @ mu) / n
    rr = acc.pa_bb - 2.0 * mu @ acc.pa_atb + mu @ acc.pa_ata @ mu
    var_after = max(rr / n - mean_after**2, 0.0)
    return TaskReferences(
        task=task,
        mu={int(z): float(mu[z]) for z in present},
        absent=absent,
        underdetermined=rank < present.size,
        rank=rank,
        n_frames=n,
        n_atoms=acc.n_atoms,
        n_no_energy=acc.n_no_energy,
        force_rms=force_rms,
        e_per_atom_mean_before=float(mean_before),
        e_per_atom_std_before=math.sqrt(var_before),
        e_per_atom_mean_after=float(mean_after),
        e_per_atom_std_after=math.sqrt(var_after),
        ridge=ridge,
        element_frames={int(z): int(acc.element_frames[z]) for z in present},
        element_status=status,
        collinear=collinear,
    )


def solve_all(accs: Mapping[str, RefAccumulator], ridge: float = 0.0) -> dict[str, TaskReferences]:
    """Solve every task; ``absent`` is relative to the elements of all tasks together."""
    elements: set[int] = set()
    for acc in accs.values():
        elements.update(int(z) for z in np.flatnonzero(acc.element_frames > 0))
    return {task: solve(task, acc, ridge, elements) for task, acc in sorted(accs.items())}


# --- wiring to the store -------------------------------------------------------------------


def _list_parts(column: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, flat values, null mask) of an Arrow list column."""
    chunk = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    return (
        chunk.offsets.to_numpy(),
        chunk.values.to_numpy(zero_copy_only=False),
        chunk.is_null().to_numpy(zero_copy_only=False),
    )


def accumulate_table(table: Any, batch: int = 8192) -> dict[str, RefAccumulator]:
    """Per-task accumulators from an Arrow table with columns task, energy, numbers, forces.

    Columnar and vectorised (no Record objects): the fast path for Arrow shards. Gives the same
    sums as :func:`accumulate` over the same records.
    """
    accs: dict[str, RefAccumulator] = {}
    for start in range(0, table.num_rows, batch):
        part = table.slice(start, batch)
        tasks = np.asarray(part.column("task").to_pylist(), dtype=object)
        energy = part.column("energy").to_numpy(zero_copy_only=False).astype(np.float64)
        z_off, z_val, _ = _list_parts(part.column("numbers"))
        f_off, f_val, f_null = _list_parts(part.column("forces"))
        rows = np.repeat(np.arange(part.num_rows), np.diff(z_off))
        flat = rows * N_Z + z_val[z_off[0] : z_off[-1]].astype(np.int64)
        counts = np.bincount(flat, minlength=part.num_rows * N_Z).reshape(part.num_rows, N_Z)
        f_sq = np.square(f_val[f_off[0] : f_off[-1]])
        f_rows = np.repeat(np.arange(part.num_rows), np.diff(f_off))
        row_f_sq = np.bincount(f_rows, weights=f_sq, minlength=part.num_rows)
        row_f_n = np.diff(f_off) * ~f_null
        for task in np.unique(tasks):
            mask = tasks == task
            acc = accs.setdefault(str(task), RefAccumulator())
            has_e = mask & np.isfinite(energy)
            acc.add_batch(counts[has_e], energy[has_e])
            acc.n_no_energy += int((mask & ~np.isfinite(energy)).sum())
            acc.force_sq += float(row_f_sq[mask].sum())
            acc.force_n += int(row_f_n[mask].sum())
    return accs


def shard_accumulators(store_path: str, shard: str, split: str | None = None) -> dict[str, RefAccumulator]:
    """Dask task: the per-task accumulators of one shard (opens its own store handle), from
    the store's public column API (``Store.table``), whatever the shard's format.

    ``split`` (``"train"``, ...) keeps only the records with that label in the shard's split
    sidecar, so validation and test frames do not inform the references.
    """
    from omni_data.store import Store

    store = Store(store_path)
    keep: set[str] | None = None
    if split is not None:
        import pyarrow.parquet as pq

        from omni_data.store import sidecar_path

        path = sidecar_path(store.path, "splits", shard, ".parquet")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no split labels for shard {shard!r}; run `omni-data split STORE` first")
        labels = pq.read_table(str(path), columns=["id", "split"]).to_pydict()
        keep = {i for i, s in zip(labels["id"], labels["split"]) if s == split}
    table = store.table(["id", "task", "energy", "numbers", "forces"], shard=shard)
    if keep is not None:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = table.filter(pc.is_in(table.column("id"), value_set=pa.array(sorted(keep), pa.string())))
    return accumulate_table(table)


def fit_store(
    store_path: str,
    ridge: float = 0.0,
    workers: int = 1,
    client: Any = None,
    shards: Sequence[str] | None = None,
    split: str | None = None,
) -> dict[str, TaskReferences]:
    """Fit references for every task of a store (or of ``shards``; only ``split`` records if
    given): map over shards, sum, solve."""
    from functools import partial

    from omni_data.harmonize.shards import map_shards

    task = shard_accumulators if split is None else partial(shard_accumulators, split=split)
    parts = map_shards(store_path, task, shards=shards, workers=workers, client=client)
    fits = solve_all(merge_all(parts), ridge)
    for fit in fits.values():
        fit.split = split
    return fits
