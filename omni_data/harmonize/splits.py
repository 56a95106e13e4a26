"""Deterministic train/val/test splits by group: a hash of the group value picks the split.

Every record of one group (e.g. all frames of one relaxation, keyed by source file) lands in
the same split, so no group straddles two splits, and the answer depends only on
(seed, group value, fractions) -- not on shard order, worker count or what else is in the store.
Labels are written per shard to ``sidecars/splits/<shard>.parquet`` (id, group, split); the
catalog section ``splits`` holds fractions, seed, group keys and counts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.schema import Record

__all__ = [
    "DERIVED_KEYS",
    "FRAME_BLOCK",
    "RECORD_FIELDS",
    "SECTION",
    "SPLITS",
    "assign",
    "bucket",
    "check_fractions",
    "group_value",
    "id_prefix",
    "ids_in_split",
    "shard_split_table",
    "split_labels",
    "split_of",
    "split_store",
]

SPLITS = ("train", "val", "test")
SECTION = "splits"
SIDECAR = "splits"
RECORD_FIELDS = ("id", "dataset", "task", "source_file", "source_index", "energy_kind")
_FRAME_COUNTER = re.compile(r"[^A-Za-z0-9]*\d+$")


def id_prefix(record_id: str) -> str:
    """``record_id`` without its trailing frame counter: ``traj3:17`` -> ``traj3``,
    ``rxn001_frame_005`` -> ``rxn001_frame``; an id that is only digits stays whole."""
    return _FRAME_COUNTER.sub("", record_id) or record_id


def _formula(record: Record) -> str:
    """Hill-ordered formula of the frame (all atoms, not reduced)."""
    from ase.formula import Formula
    from ase.symbols import Symbols

    return Formula(str(Symbols(record.numbers))).format("hill")


FRAME_BLOCK = 100  # frames per group of the ``frame_block`` key


def _frame_block(record: Record) -> str:
    """``source_file:k`` for frames ``k*100 .. k*100+99`` of one file: time blocks of a single
    long trajectory (neighbours are split only at the block edges)."""
    return f"{record.source_file}:{record.source_index // FRAME_BLOCK}"


# group keys computed from a record (used when its metadata has no entry of that name)
DERIVED_KEYS: dict[str, Callable[[Record], str]] = {
    "formula": _formula,
    "id_prefix": lambda record: id_prefix(record.id),
    "frame_block": _frame_block,
}


def group_value(record: Record, key: str) -> str:
    """The group of ``record`` under ``key``: a Record field (``id``, ``source_file``, ...), a
    metadata entry (``metadata.<name>`` or a bare name found in metadata or in its ``info``
    mapping), or a derived key of :data:`DERIVED_KEYS`: ``formula``, ``id_prefix`` (the id
    without its frame counter) or ``frame_block`` (blocks of 100 frames of one source file).

    A key that names neither raises ``KeyError`` naming the record.
    """
    if key in RECORD_FIELDS:
        return str(getattr(record, key))
    name = key[len("metadata.") :] if key.startswith("metadata.") else key
    info = record.metadata.get("info")
    found = record.metadata if name in record.metadata else None
    if found is None and isinstance(info, dict) and name in info:
        found = info
    if found is not None:
        value = found[name]
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if name in DERIVED_KEYS:
        return DERIVED_KEYS[name](record)
    raise KeyError(
        f"record {record.id!r} ({record.source_file}): group key {key!r} is neither a "
        f"record field {RECORD_FIELDS}, a derived key {tuple(DERIVED_KEYS)} nor in its "
        f"metadata {sorted(record.metadata)}"
    )


def bucket(group: str, seed: int) -> float:
    """A uniform number in [0, 1) from sha256(seed, group): stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) fractions: three numbers >= 0 summing to 1."""
    f = tuple(float(x) for x in fractions)
    if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must be three numbers >= 0 summing to 1, got {list(fractions)}")
    return f  # type: ignore[return-value]


def assign(group: str, fractions: Sequence[float], seed: int) -> str:
    """The split of one group value."""
    u = bucket(group, seed)
    train, val, _test = fractions
    if u < train:
        return "train"
    if u < train + val:
        return "val"
    return "test"


def shard_split_table(
    records: Sequence[Record] | Any,
    group_keys: Mapping[str, str],
    fractions: Sequence[float],
    seed: int,
    default_key: str = "id",
) -> Any:
    """A pyarrow Table (id, dataset, group, split) for one shard's records.

    ``group_keys`` maps dataset -> group key (from its manifest); others use ``default_key``.
    """
    import pyarrow as pa

    ids, datasets, groups, splits = [], [], [], []
    for rec in records:
        g = f"{rec.dataset}\x00{group_value(rec, group_keys.get(rec.dataset, default_key))}"
        ids.append(rec.id)
        datasets.append(rec.dataset)
        groups.append(g.split("\x00", 1)[1])
        splits.append(assign(g, fractions, seed))
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "dataset": pa.array(datasets, pa.string()),
            "group": pa.array(groups, pa.string()),
            "split": pa.array(splits, pa.string()),
        }
    )


def _write_shard_labels(
    store_path: str,
    shard: str,
    group_keys: dict[str, str],
    fractions: tuple[float, float, float],
    seed: int,
    default_key: str,
) -> dict[str, int]:
    """Dask task: label one shard, write its sidecar atomically, return counts per split."""
    import os

    import pyarrow.parquet as pq

    from omni_data.store import Store, sidecar_path

    store = Store(store_path)
    table = shard_split_table(store.iter_shard(shard), group_keys, fractions, seed, default_key)
    final = sidecar_path(Path(store_path), SIDECAR, shard, ".parquet")
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    pq.write_table(table, str(tmp))
    os.replace(tmp, final)
    labels = table.column("split").to_numpy(zero_copy_only=False)
    return {s: int((labels == s).sum()) for s in SPLITS}


def split_store(
    store_path: str | Path,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    group_keys: Mapping[str, str] | None = None,
    default_key: str = "id",
    workers: int = 1,
    client: Any = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """Label every shard (Dask map) and record the split in the catalog; returns the section.

    ``warnings`` (e.g. :meth:`omni_data.harmonize.grouping.GroupPlan.warnings`) are kept in the
    section, so the report shows them beside the counts."""
    from functools import partial

    from omni_data.harmonize.shards import map_shards
    from omni_data.store import Store

    f = check_fractions(fractions)
    keys = dict(group_keys or {})
    task = partial(_write_shard_labels, group_keys=keys, fractions=f, seed=int(seed), default_key=default_key)
    store = Store(store_path)
    counts = map_shards(store.path, task, store.shard_names, workers=workers, client=client)
    total = {s: sum(c[s] for c in counts) for s in SPLITS}
    section = {
        "fractions": dict(zip(SPLITS, f)),
        "seed": int(seed),
        "group_keys": keys,
        "default_group_key": default_key,
        "counts": total,
        "shards": {name: c for name, c in zip(store.shard_names, counts)},
        "warnings": list(warnings),
    }
    store.catalog.update_section(SECTION, section)
    return section


def split_labels(store: Any) -> Any:
    """All split labels of a store as one pyarrow Table (id, dataset, group, split), shard order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from omni_data.store import sidecar_path

    if hasattr(store, "stores"):  # a StoreSet: members' labels, members in order (= global index)
        if SECTION not in (store.catalog.sections or {}):
            missing = [str(s.path) for s in store.stores if SECTION not in (s.catalog.sections or {})]
            raise KeyError(f"{', '.join(missing)}: no 'splits' section; run `omni-data split STORE` first")
        tables = [t for t in (split_labels(s) for s in store.stores) if t.num_rows]
        return pa.concat_tables(tables) if tables else pa.table({"id": [], "split": []})
    if SECTION not in (store.catalog.sections or {}):
        raise KeyError(f"{store.path}: no 'splits' section; run `omni-data split STORE` first")
    parts = []
    for name in store.shard_names:
        path = sidecar_path(store.path, SIDECAR, name, ".parquet")
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: split labels missing for shard {name!r}; "
                "re-run `omni-data split` (shards were added after the split)"
            )
        parts.append(pq.read_table(str(path)))
    return pa.concat_tables(parts) if parts else pa.table({"id": [], "split": []})


def split_of(store: Any) -> np.ndarray:
    """For the trainer: the split name of every record, in the store's global index order."""
    return split_labels(store).column("split").to_numpy(zero_copy_only=False)


def ids_in_split(store: Any, name: str) -> list[str]:
    """For the trainer: the ids of the records in split ``name`` (train, val or test)."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; choose from {SPLITS}")
    table = split_labels(store)
    mask = table.column("split").to_numpy(zero_copy_only=False) == name
    return [i for i, keep in zip(table.column("id").to_pylist(), mask) if keep]
