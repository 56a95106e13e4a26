"""Column tables of a store: a shard's Parquet columns (checked against the catalog), columns
built from its decoded records, and the quarantine of every catalogued shard.

``Store.table`` and ``Store.quarantine`` are thin faces over these functions; record access by
index or id stays in ``reader.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni_data.schema import Record

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["shard_table", "table_schema", "quarantine_table", "QUARANTINE_COLUMNS"]

QUARANTINE_COLUMNS = ("source_file", "source_index", "reason", "kind", "dataset", "source_id", "detail", "shard")
"""The quarantine table's columns, in order (``source_index`` is int64, the rest strings)."""


def shard_table(
    root: Path,
    entry: dict[str, Any],
    columns: Sequence[str] | None,
    records: Callable[[], Iterable[Record]],
) -> pa.Table:
    """Columns of one shard (its catalog ``entry``): those of its Parquet file read from it and
    checked, others (``numbers``, ``forces``, ``metadata``, ...) built from ``records()``, its
    decoded records in row order; KeyError naming the columns there are for an unknown one."""
    import pyarrow as pa

    from omni_data.store.arrow import COLUMNS, RECORD_SCHEMA, read_columns, records_to_table

    wanted = list(columns) if columns is not None else list(COLUMNS)
    unknown = [c for c in wanted if c not in COLUMNS and c not in RECORD_SCHEMA.names]
    if unknown:
        raise KeyError(
            f"{root}: no column {unknown[0]!r} (columns: {list(COLUMNS)} and "
            f"{[c for c in RECORD_SCHEMA.names if c not in COLUMNS]})"
        )
    meta = entry["files"].get("columns")
    if meta is None:
        raise ValueError(f"{root}: shard {entry['name']!r} has no Parquet columns in the catalog")
    table = read_columns(root / meta["file"], meta, [c for c in wanted if c in COLUMNS])
    if table.num_rows != entry["records"]:
        raise ValueError(f"{root / meta['file']}: holds {table.num_rows} rows, the catalog says {entry['records']}")
    rest = [c for c in wanted if c not in COLUMNS]
    if not rest:
        return table
    decoded = records_to_table(list(records())).select(rest)
    return pa.table({c: (table if c in COLUMNS else decoded).column(c) for c in wanted})


def table_schema(columns: Sequence[str] | None) -> pa.Schema:
    """The schema of a table of ``columns`` (default: the Parquet columns); an empty store's table."""
    import pyarrow as pa

    from omni_data.store.arrow import COLUMNS, RECORD_SCHEMA, SCHEMA

    if columns is None:
        return SCHEMA
    return pa.schema([SCHEMA.field(c) if c in COLUMNS else RECORD_SCHEMA.field(c) for c in columns])


def quarantine_table(root: Path, shards: Iterable[dict[str, Any]]) -> pa.Table:
    """Every quarantined input of the catalogued ``shards`` (``QUARANTINE_COLUMNS``), empty when none."""
    import pyarrow as pa

    from omni_data.store.quarantine import read_quarantine

    parts = [read_quarantine(root / s["quarantine"]["file"], s["quarantine"]) for s in shards if s.get("quarantine")]
    if parts:
        return pa.concat_tables(parts)
    return pa.schema(
        [(c, pa.int64() if c == "source_index" else pa.string()) for c in QUARANTINE_COLUMNS]
    ).empty_table()
