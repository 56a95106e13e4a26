"""A shard's columns: one Parquet file of scalar fields per shard, the store's analytics face.

The LMDB file (``lmdb.py``) holds each structure once; this file holds only per-record scalars
(what ``Store.table``, selection, references and reports read) and no per-atom array:

``id, dataset, task, n_atoms, formula, energy, energy_kind, charge, spin, weight, source_file,
source_index, periodic, has_forces, has_stress``

Written with zstd compression. Read only after the whole file's size and crc32 match the
catalog (``read_columns``) and then ``Table.validate(full=True)``: a damaged file is a
``ValueError`` naming it, never a crash in a compute kernel. ``Store.table`` serves columns this
file does not hold (``numbers``, ``positions``, ``forces``, ``metadata``, ...) by decoding the
LMDB records (``records_to_table``).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from omni_data.schema import Record

__all__ = ["formula", "columns_table", "write_columns", "file_crc32", "read_columns", "records_to_table"]

COLUMNS: dict[str, pa.DataType] = {
    "id": pa.string(),
    "dataset": pa.string(),
    "task": pa.string(),
    "n_atoms": pa.int32(),
    "formula": pa.string(),
    "energy": pa.float64(),
    "energy_kind": pa.string(),
    "charge": pa.float64(),
    "spin": pa.int64(),
    "weight": pa.float64(),
    "source_file": pa.string(),
    "source_index": pa.int64(),
    "periodic": pa.bool_(),
    "has_forces": pa.bool_(),
    "has_stress": pa.bool_(),
}
"""The Parquet file's columns, in order."""
SCHEMA = pa.schema([pa.field(k, t) for k, t in COLUMNS.items()])

# every field of a Record, for records_to_table (Store.table's columns beyond the Parquet file)
LIST_COLUMNS: dict[str, tuple[pa.DataType, str, tuple[str, int]]] = {
    "numbers": (pa.uint8(), "uint8", ("atom", 1)),
    "positions": (pa.float64(), "float64", ("atom", 3)),
    "cell": (pa.float64(), "float64", ("fixed", 9)),
    "pbc": (pa.bool_(), "bool", ("fixed", 3)),
    "forces": (pa.float64(), "float64", ("atom", 3)),
    "stress": (pa.float64(), "float64", ("fixed", 6)),
    "magmoms": (pa.float64(), "float64", ("atom", 1)),
    "fixed": (pa.bool_(), "bool", ("atom", 1)),
    "tags": (pa.int64(), "int64", ("atom", 1)),
}
DERIVED_COLUMNS = ("formula", "periodic", "has_forces", "has_stress")  # computed from a Record's arrays
RECORD_SCALARS: dict[str, pa.DataType] = {k: t for k, t in COLUMNS.items() if k not in DERIVED_COLUMNS} | {
    "metadata": pa.string()
}
RECORD_SCHEMA = pa.schema(
    [pa.field(k, t) for k, t in RECORD_SCALARS.items()]
    + [pa.field(k, pa.list_(t)) for k, (t, _d, _s) in LIST_COLUMNS.items()]
)


_FORMULAS: dict[bytes, str] = {}


def formula(numbers: np.ndarray) -> str:
    """Hill formula of atomic numbers (C, H first when carbon is present, then alphabetical)."""
    zs, counts = np.unique(np.asarray(numbers, dtype=np.int64), return_counts=True)
    key = zs.tobytes() + b"|" + counts.tobytes()
    text = _FORMULAS.get(key)
    if text is None:
        from ase.data import chemical_symbols

        amount = {chemical_symbols[int(z)]: int(c) for z, c in zip(zs, counts)}
        order = sorted(amount)
        if "C" in amount:
            order = ["C"] + (["H"] if "H" in amount else []) + [e for e in order if e not in ("C", "H")]
        text = "".join(e + (str(amount[e]) if amount[e] > 1 else "") for e in order)
        if len(_FORMULAS) < 100_000:
            _FORMULAS[key] = text
    return text


def columns_table(records: Sequence[Record]) -> pa.Table:
    """The shard's Parquet columns for normalized records (``SCHEMA``)."""
    cols: dict[str, Any] = {
        "id": [r.id for r in records],
        "dataset": [r.dataset for r in records],
        "task": [r.task for r in records],
        "n_atoms": np.array([r.n_atoms for r in records], dtype=np.int32),
        "formula": [formula(r.numbers) for r in records],
        "energy": [r.energy for r in records],
        "energy_kind": [r.energy_kind for r in records],
        "charge": [r.charge for r in records],
        "spin": [r.spin for r in records],
        "weight": np.array([r.weight for r in records], dtype=np.float64),
        "source_file": [r.source_file for r in records],
        "source_index": np.array([r.source_index for r in records], dtype=np.int64),
        "periodic": np.array([bool(np.any(r.pbc)) for r in records], dtype=bool),
        "has_forces": np.array([r.forces is not None for r in records], dtype=bool),
        "has_stress": np.array([r.stress is not None for r in records], dtype=bool),
    }
    return pa.Table.from_arrays([_to_arrow(cols[k], t) for k, t in COLUMNS.items()], schema=SCHEMA)


def write_columns(table: pa.Table, path: Path) -> None:
    """Write ``table`` as Parquet (zstd); a failed write raises ``OSError`` naming ``path``."""
    import pyarrow.parquet as pq

    try:
        pq.write_table(
            table, str(path), compression="zstd", compression_level=9, use_dictionary=True, write_statistics=False
        )
    except OSError as exc:
        if exc.errno is None:
            raise OSError(f"{path}: {exc}") from exc
        raise OSError(exc.errno, f"{path}: {os.strerror(exc.errno)}") from exc


def file_crc32(path: Path) -> int:
    with open(path, "rb") as fh:
        return zlib.crc32(fh.read())


def read_columns(path: Path, meta: dict[str, Any] | None, columns: Sequence[str] | None = None) -> pa.Table:
    """The Parquet columns of one shard, after its size and crc32 match ``meta`` (the catalog's
    entry) and the decoded table passes ``validate(full=True)``; ``ValueError`` naming ``path``."""
    import pyarrow.parquet as pq

    from omni_data.store.lmdb import ShardError

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ShardError(f"{path}: file is missing") from None
    if meta is not None:
        if "bytes" in meta and len(data) != meta["bytes"]:
            raise ShardError(f"{path}: {len(data)} bytes on disk, the catalog says {meta['bytes']}")
        if "crc32" in meta and zlib.crc32(data) != meta["crc32"]:
            raise ShardError(f"{path}: checksum mismatch (damaged file)")
    wanted = None if columns is None else list(columns)
    try:
        table = pq.read_table(pa.BufferReader(data), columns=wanted)
        table.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ShardError(f"{path}: unreadable Parquet columns ({exc})") from None
    if not table.schema.equals(SCHEMA if wanted is None else pa.schema([SCHEMA.field(c) for c in wanted])):
        raise ShardError(f"{path}: columns {table.schema.names} do not match store format 2")
    return table


def _list_column(records: Sequence[Record], name: str, n_atoms: np.ndarray) -> pa.Array:
    arrow_type, dtype, (kind, width) = LIST_COLUMNS[name]
    values = [getattr(r, name) for r in records]
    present = np.array([v is not None for v in values], dtype=bool)
    lengths = (n_atoms * width if kind == "atom" else np.full(len(records), width)) * present
    offsets = np.zeros(len(records) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    kept = [v for v in values if v is not None]
    if not kept:
        flat = np.zeros(0, dtype=dtype)
    elif kind == "atom" and width == 3 or name == "cell":  # (n, 3) / (3, 3): join rows, no per-record reshape
        flat = np.concatenate(kept, axis=0).astype(dtype, copy=False).reshape(-1)
    else:
        flat = np.concatenate([np.asarray(v).reshape(-1) for v in kept]).astype(dtype, copy=False)
    mask = None if present.all() else _from_numpy(~present, pa.bool_())
    return pa.ListArray.from_arrays(_from_numpy(offsets, pa.int32()), _from_numpy(flat, arrow_type), mask=mask)


# Columns are built from numpy buffers with ``pa.Array.from_buffers`` rather than ``pa.array``:
# the latter asks pyarrow's pandas shim whether its input is a pandas object, which imports
# pandas (0.2 s in every fresh worker process) although no pandas object is ever passed.
_NUMPY = {
    pa.float64(): np.float64,
    pa.int64(): np.int64,
    pa.int32(): np.int32,
    pa.uint8(): np.uint8,
    pa.bool_(): np.bool_,
}


def _bitmap(flags: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(flags.astype(bool, copy=False), bitorder="little"))


def _from_numpy(values: np.ndarray, arrow_type: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """A primitive Arrow array over ``values`` (nulls where ``valid`` is False)."""
    n = len(values)
    if arrow_type == pa.bool_():
        data = _bitmap(np.asarray(values, dtype=bool))
    else:
        data = pa.py_buffer(np.ascontiguousarray(values, dtype=_NUMPY[arrow_type]))
    if valid is None or valid.all():
        return pa.Array.from_buffers(arrow_type, n, [None, data], null_count=0)
    return pa.Array.from_buffers(arrow_type, n, [_bitmap(valid), data], null_count=int(n - valid.sum()))


def _to_arrow(values: Any, arrow_type: pa.DataType) -> pa.Array:
    """``pa.array(values, type=arrow_type)`` for a numpy array or a list that may hold ``None``."""
    if isinstance(values, np.ndarray):
        return _from_numpy(values, arrow_type)
    valid = np.array([v is not None for v in values], dtype=bool)
    if arrow_type == pa.string():
        encoded = [b"" if v is None else v.encode("utf-8") for v in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
        if offsets[-1] >= 2**31:  # beyond 32-bit offsets: let pyarrow decide
            return pa.array(values, type=arrow_type)
        bufs = [
            None if valid.all() else _bitmap(valid),
            pa.py_buffer(offsets.astype(np.int32)),
            pa.py_buffer(b"".join(encoded)),
        ]
        return pa.Array.from_buffers(arrow_type, len(values), bufs, null_count=int(len(values) - valid.sum()))
    filled: np.ndarray = np.array([0 if v is None else v for v in values], dtype=_NUMPY[arrow_type])
    return _from_numpy(filled, arrow_type, valid)


_JSON = json.JSONEncoder(sort_keys=True, allow_nan=True)  # what json.dumps(..., sort_keys=True) builds per call


def _metadata_json(record: Record) -> str | None:
    if not record.metadata:
        return None
    try:
        return _JSON.encode(record.metadata)
    except TypeError as exc:
        raise ValueError(f"record {record.id!r}: metadata is not JSON-serialisable ({exc})") from None


def records_to_table(records: Sequence[Record]) -> pa.Table:
    """Every field of ``records`` as one table (``RECORD_SCHEMA``): what ``Store.table`` gives
    for columns the shard's Parquet file does not hold (per-atom arrays, metadata)."""
    n_atoms = np.array([r.n_atoms for r in records], dtype=np.int64)
    cols: dict[str, Any] = {
        "id": [r.id for r in records],
        "dataset": [r.dataset for r in records],
        "task": [r.task for r in records],
        "n_atoms": n_atoms.astype(np.int32),
        "energy": [r.energy for r in records],
        "energy_kind": [r.energy_kind for r in records],
        "charge": [r.charge for r in records],
        "spin": [r.spin for r in records],
        "weight": np.array([r.weight for r in records], dtype=np.float64),
        "source_file": [r.source_file for r in records],
        "source_index": np.array([r.source_index for r in records], dtype=np.int64),
        "metadata": [_metadata_json(r) for r in records],
    }
    arrays = [_to_arrow(cols[k], t) for k, t in RECORD_SCALARS.items()]
    arrays += [_list_column(records, name, n_atoms) for name in LIST_COLUMNS]
    return pa.Table.from_arrays(arrays, schema=RECORD_SCHEMA)
