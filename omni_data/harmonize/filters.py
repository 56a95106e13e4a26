"""Quality filters declared in a manifest (``Filters``), applied to one record at a time.

``apply_filters`` returns the first failing filter as a quarantine reason
(``"filter:<name> <detail>"``) or ``None``. Ingest calls it for every record; ``omni-data filter``
re-applies a manifest's filters to a finished store. Minimum distances use the record's cell and
periodicity (``omni_data.contacts``), so a short contact across the cell boundary (a periodic
image, including an atom's own image in a small cell) counts. Atoms under 0.1 Å apart never get
here: ingest quarantines them first (``schema.MIN_INTERATOMIC_DISTANCE``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omni_data.manifest import Filters
from omni_data.schema import Record

__all__ = ["max_force", "min_distance", "apply_filters", "shard_mask", "filter_store"]


def max_force(record: Record) -> tuple[float, int] | None:
    """Largest per-atom force magnitude (eV/Å) and its atom index; None without forces."""
    if record.forces is None:
        return None
    norms = np.linalg.norm(np.asarray(record.forces, dtype=float).reshape(-1, 3), axis=1)
    i = int(np.argmax(norms))
    return float(norms[i]), i


def min_distance(record: Record, cutoff: float) -> tuple[float, int, int] | None:
    """Shortest interatomic distance below ``cutoff`` (Å) with its pair, periodic images included
    (an atom and its own image in a small cell is the pair ``(i, i)``).

    None when no pair is closer than ``cutoff``. ``omni_data.contacts.closest_pair`` does the work
    (microseconds per structure; a cell-list library binned the whole box at the cutoff's size).
    """
    from omni_data.contacts import closest_pair

    return closest_pair(record.positions, record.cell, record.pbc, float(cutoff))


def apply_filters(record: Record, filters: Filters) -> str | None:
    """The reason ``record`` fails ``filters`` (``"filter:..."``), or None if it passes.

    Checks in order: max_force, energy_per_atom, min_distance, max_stress. A filter whose label
    is missing (no forces, no energy, no stress) does not apply to that record.
    """
    if filters.max_force is not None:
        found = max_force(record)
        if found is not None and found[0] > filters.max_force:
            return f"filter:max_force |F|={found[0]:.4g} eV/Å on atom {found[1]} > {filters.max_force:g}"
    if filters.energy_per_atom is not None and record.energy is not None:
        lo, hi = filters.energy_per_atom
        epa = float(record.energy) / record.n_atoms
        if not lo <= epa <= hi:
            return f"filter:energy_per_atom {epa:.6g} eV/atom outside [{lo:g}, {hi:g}]"
    if filters.min_distance is not None and record.n_atoms > 0:
        found = min_distance(record, filters.min_distance)
        if found is not None:
            d, i, j = found
            return f"filter:min_distance {d:.4g} Å between atoms {i} and {j} < {filters.min_distance:g}"
    if filters.max_stress is not None and record.stress is not None:
        s = np.abs(np.asarray(record.stress, dtype=float).reshape(-1))
        k = int(np.argmax(s))
        if s[k] > filters.max_stress:
            return f"filter:max_stress |σ|={s[k]:.4g} eV/Å³ (component {k}) > {filters.max_stress:g}"
    return None


# --- over a store ------------------------------------------------------------------------------

SIDECAR = "filter"
SECTION = "filter"


def shard_mask(store_path: str, shard: str, filters: Filters, dataset: str | None) -> Any:
    """Dask task: (id, keep, reason) for one shard, written as its ``filter`` sidecar.

    Only records of ``dataset`` are filtered (None: every record); others are kept.
    """
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from omni_data.store import Store, sidecar_path

    ids, keep, reasons = [], [], []
    for rec in Store(store_path).iter_shard(shard):
        why = apply_filters(rec, filters) if dataset is None or rec.dataset == dataset else None
        ids.append(rec.id)
        keep.append(why is None)
        reasons.append(why)
    table = pa.table(
        {"id": pa.array(ids, pa.string()), "keep": pa.array(keep, pa.bool_()), "reason": pa.array(reasons, pa.string())}
    )
    final = sidecar_path(store_path, SIDECAR, shard, ".parquet")
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    pq.write_table(table, str(tmp))
    os.replace(tmp, final)
    return table


def filter_store(
    store_path: str,
    filters: Filters,
    dataset: str | None = None,
    out: str | None = None,
    workers: int = 1,
    client: Any = None,
) -> dict[str, Any]:
    """Apply ``filters`` to a store: masks as sidecars, a catalog section, optionally a new store.

    With ``out``, kept records are written to a new store with the same shard names; the dropped
    ones join the shard's existing quarantine there with their ``filter:...`` reason.
    """
    import dataclasses
    from collections import Counter
    from functools import partial

    from omni_data.harmonize.shards import carried_rejections, map_shards
    from omni_data.schema import Rejected
    from omni_data.store import Store, write_shard

    store = Store(store_path)
    names = store.shard_names
    masks = map_shards(store.path, partial(shard_mask, filters=filters, dataset=dataset), names, workers, client)
    reasons = Counter(r.split(" ", 1)[0] for t in masks for r in t.column("reason").to_pylist() if r)
    section = {
        "filters": dataclasses.asdict(filters),
        "dataset": dataset,
        "records": int(sum(len(t) for t in masks)),
        "dropped": int(sum(reasons.values())),
        "by_reason": dict(reasons),
        "out": out,
    }
    store.catalog.update_section(SECTION, section)
    if out is not None:
        for name, mask in zip(names, masks):
            why = dict(zip(mask.column("id").to_pylist(), mask.column("reason").to_pylist()))
            kept, dropped = [], carried_rejections(store, name)
            for rec in store.iter_shard(name):
                if why[rec.id] is None:
                    kept.append(rec)
                else:
                    dropped.append(
                        Rejected(
                            rec.source_file, rec.source_index, why[rec.id], rec.dataset, rec.id, {"task": rec.task}
                        )
                    )
            write_shard(out, name, kept, dropped)
    return section
