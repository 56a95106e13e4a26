"""Arrow IPC shards: one row per record, scalar columns plus flattened list columns.

The Arrow file is the analytics face of a shard (pyarrow, Dask, pandas read it directly); the
LMDB file is the random-access face. Both hold the same records. Missing labels are Arrow nulls,
never 0. Per-atom arrays are flattened (``positions`` holds ``3 * n_atoms`` floats, row-major).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from omni_data.schema import Record
from omni_data.store import codec

# the C reader (``_fastcodec``: ArrowRows, arrow_row, arrow_rows) when the C decoder is in use
_C = codec._fastcodec if codec.ACCELERATED else None

# list column -> (arrow value type, numpy dtype, values per atom or fixed length)
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
SCALAR_COLUMNS: dict[str, pa.DataType] = {
    "id": pa.string(),
    "dataset": pa.string(),
    "task": pa.string(),
    "n_atoms": pa.int32(),
    "energy": pa.float64(),
    "energy_kind": pa.string(),
    "charge": pa.float64(),
    "spin": pa.int64(),
    "weight": pa.float64(),
    "source_file": pa.string(),
    "source_index": pa.int64(),
    "metadata": pa.string(),
}
SCHEMA = pa.schema(
    [pa.field(k, t) for k, t in SCALAR_COLUMNS.items()]
    + [pa.field(k, pa.list_(t)) for k, (t, _d, _s) in LIST_COLUMNS.items()]
)


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
_NUMPY = {pa.float64(): np.float64, pa.int64(): np.int64, pa.int32(): np.int32, pa.uint8(): np.uint8,
          pa.bool_(): np.bool_}


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
        bufs = [None if valid.all() else _bitmap(valid), pa.py_buffer(offsets.astype(np.int32)),
                pa.py_buffer(b"".join(encoded))]
        return pa.Array.from_buffers(arrow_type, len(values), bufs, null_count=int(len(values) - valid.sum()))
    filled = np.array([0 if v is None else v for v in values], dtype=_NUMPY[arrow_type])
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
    """Build the shard table for normalized records (one batch, columns in ``SCHEMA`` order)."""
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
    arrays = [_to_arrow(cols[k], t) for k, t in SCALAR_COLUMNS.items()]
    arrays += [_list_column(records, name, n_atoms) for name in LIST_COLUMNS]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def write_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` as an Arrow IPC *file* (random-access format, memory-mappable); a failed
    write raises ``OSError`` naming ``path`` (``[Errno 28] PATH: No space left on device``)."""
    try:
        with pa.OSFile(str(path), "wb") as sink:
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
    except OSError as exc:  # pyarrow's text names no file ("Error writing bytes to file. Detail: ...")
        if exc.errno is None:
            raise OSError(f"{path}: {exc}") from exc
        raise OSError(exc.errno, f"{path}: {os.strerror(exc.errno)}") from exc


def read_table(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Memory-map an Arrow shard and return its table (optionally only ``columns``)."""
    with pa.memory_map(str(path), "r") as source:
        table = pa.ipc.open_file(source).read_all()
    return table.select(list(columns)) if columns is not None else table


class ArrowShard:
    """Row access to one Arrow shard (the table memory-mapped once).

    With the C decoder built, ``record`` reads a row straight from the column buffers
    (``_fastcodec.ArrowRows``, ~1 us); the Python path below (numpy views of the columns, built
    on first use) reads any row the C reader does not take and is the reference it is tested
    against."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._table = read_table(self.path).combine_chunks()
        self.n = self._table.num_rows
        self._fast = _fast_rows(self._table)
        self._scalars: dict[str, list[Any]] | None = None  # the Python path's columns
        self._lists: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._ids: dict[str, int] | None = None

    def __len__(self) -> int:
        return self.n

    def _columns(self) -> dict[str, list[Any]]:
        """Scalar columns as lists and list columns as (offsets, values, nulls), built once."""
        if self._scalars is None:
            table = self._table
            for name in LIST_COLUMNS:
                chunk = table.column(name).chunk(0) if table.num_rows else pa.array([], pa.list_(LIST_COLUMNS[name][0]))
                offsets = chunk.offsets.to_numpy()
                values = chunk.values.to_numpy(zero_copy_only=False)
                nulls = chunk.is_null().to_numpy(zero_copy_only=False)
                self._lists[name] = (offsets, values, nulls)
            self._scalars = {name: self._pylist(name) for name in SCALAR_COLUMNS}
        return self._scalars

    def _pylist(self, name: str) -> list[Any]:
        column = self._table.column(name)
        try:
            return column.to_pylist()
        except UnicodeDecodeError as exc:  # name the first row that is not UTF-8
            for row in range(len(column)):
                try:
                    column[row].as_py()
                except UnicodeDecodeError:
                    raise ValueError(f"{self.path}: row {row}: column {name!r} is not valid UTF-8 ({exc})") from None
            raise

    def _array(self, name: str, row: int, shape: tuple[int, ...], dtype: str) -> np.ndarray | None:
        offsets, values, nulls = self._lists[name]
        if nulls[row]:
            return None
        return np.array(values[offsets[row] : offsets[row + 1]], dtype=dtype).reshape(shape)

    def record(self, row: int) -> Record:
        """The record at ``row`` (0-based within this shard)."""
        if not 0 <= row < self.n:
            raise IndexError(f"{self.path}: row {row} out of range 0..{self.n - 1}")
        if self._fast is not None:
            record = _C.arrow_row(self._fast, row)
            if record is not NotImplemented:
                return record
        return self.record_py(row)

    def record_py(self, row: int) -> Record:
        """``record`` in Python (what the C reader is tested against; it reads any row C does not)."""
        if not 0 <= row < self.n:
            raise IndexError(f"{self.path}: row {row} out of range 0..{self.n - 1}")
        s = {k: v[row] for k, v in self._columns().items()}
        n = s["n_atoms"]
        try:
            metadata = json.loads(s["metadata"]) if s["metadata"] else {}
        except ValueError as exc:
            raise ValueError(f"{self.path}: row {row}: metadata is not valid JSON ({exc})") from None
        return Record(
            numbers=self._array("numbers", row, (n,), "int64"),
            positions=self._array("positions", row, (n, 3), "float64"),
            id=s["id"],
            dataset=s["dataset"],
            task=s["task"],
            cell=self._array("cell", row, (3, 3), "float64"),
            pbc=self._array("pbc", row, (3,), "bool"),
            energy=s["energy"],
            energy_kind=s["energy_kind"],
            forces=self._array("forces", row, (n, 3), "float64"),
            stress=self._array("stress", row, (6,), "float64"),
            magmoms=self._array("magmoms", row, (n,), "float64"),
            charge=s["charge"],
            spin=s["spin"],
            fixed=self._array("fixed", row, (n,), "bool"),
            tags=self._array("tags", row, (n,), "int64"),
            weight=s["weight"],
            source_file=s["source_file"],
            source_index=s["source_index"],
            metadata=metadata,
        )

    def reader(self) -> Any:
        """What ``codec.read_rows_c`` reads this shard's rows with: its ``ArrowRows``, or None
        (no C reader for this shard)."""
        return self._fast

    def records(self, rows: Sequence[int]) -> list[Record]:
        """The records at ``rows``, in that order (``Store.get_many``)."""
        if self._fast is None:
            return [self.record(row) for row in rows]
        try:
            got = _C.arrow_rows(self._fast, rows)
        except IndexError:  # the Python path raises it naming the shard
            return [self.record(row) for row in rows]
        for p, record in enumerate(got):
            if record is NotImplemented:
                got[p] = self.record_py(rows[p])
        return got

    def find(self, record_id: str) -> int | None:
        """Row of ``record_id`` in this shard, or None (dict built on first use)."""
        if self._ids is None:
            ids = self._table.column("id").to_pylist()
            self._ids = {i: row for row, i in reversed(list(enumerate(ids)))}
        return self._ids.get(record_id)


def _fast_rows(table: pa.Table) -> Any:
    """The C reader's ``ArrowRows`` over ``table``'s buffers, or None where it does not apply:
    no C decoder, another schema (a shard from another version), or a layout it does not read
    (sliced arrays, nulls inside a list)."""
    if _C is None or table.num_rows == 0 or not table.schema.equals(SCHEMA):
        return None
    columns = []
    for name in SCHEMA.names:
        column = table.column(name)
        if column.num_chunks != 1:
            return None
        array = column.chunk(0)
        if array.offset:
            return None
        buffers = array.buffers()
        if name in LIST_COLUMNS:
            child = array.values
            if child.offset or child.null_count:
                return None
            triple = (buffers[0], buffers[1], child.buffers()[1])
        elif SCALAR_COLUMNS[name] == pa.string():
            triple = (buffers[0], buffers[1], buffers[2])
        else:
            triple = (buffers[0], None, buffers[1])
        if array.null_count == 0:
            triple = (None,) + triple[1:]
        if name in _CONSTANT_CANDIDATES:
            same, value = _one_value(array, name)
            if same:
                triple = (None, None, None, value)
        elif name in LIST_COLUMNS and array.null_count == len(array):
            triple = (None, None, None, None)  # e.g. magmoms of a shard without any
        columns.append(triple)
    return _C.ArrowRows(table.num_rows, tuple(columns))


# Scalar columns that usually hold one value per shard (a shard is one dataset and task), and
# list columns null in every row (no magmoms, no cell): the C reader answers them without
# touching the column's buffers, which made a cold read of the benchmark's rows about 10%
# faster. ``metadata`` counts only when no row has any.
_CONSTANT_CANDIDATES = ("dataset", "task", "energy", "energy_kind", "charge", "spin", "weight", "source_file",
                        "metadata")


def _one_value(array: pa.Array, name: str) -> tuple[bool, Any]:
    """(True, value) when every row of ``array`` holds the same value (None: every row is null),
    compared bit for bit (-0.0 is not 0.0); else (False, None). ``metadata`` counts only when
    every row is null."""
    n = len(array)
    if array.null_count == n:
        return True, None
    if array.null_count or name == "metadata":
        return False, None
    if pa.types.is_string(array.type):
        import pyarrow.compute as pc

        if pc.count_distinct(array).as_py() != 1:
            return False, None
    elif array.type.bit_width == 64 and array.offset == 0:
        bits = np.frombuffer(array.buffers()[1], dtype=np.uint64, count=n)
        if not (bits == bits[0]).all():
            return False, None
    else:
        return False, None
    return True, array[0].as_py()
