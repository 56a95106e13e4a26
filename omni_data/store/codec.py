"""Record <-> compact bytes for LMDB values: msgpack around one raw little-endian buffer.

Why not pickle: values must be readable without executing code and from other languages.
Why one raw buffer: decoding is one ``msgpack.unpackb`` of a short array, one ``bytearray`` copy
of the buffer and one ``np.ndarray`` view per field, which is what makes random access fast
(``docs/benchmarks/store.md``). Version 2 (written now) is a msgpack *array* with fixed
positions, because unpacking a 20-key map cost 3.5x as much (1.4 vs 0.4 us per record); version
1 values (a map, see ``docs/schema.md``) are still decoded, so older stores stay readable.

Version 2 value: ``[2, id, dataset, task, n, flags, pbc_bits, B, energy, energy_kind, charge,
spin, weight, source_file, source_index, metadata|nil]``. ``B`` holds, in this order and only
where ``flags`` says so: positions (3n), cell (9), forces (3n), stress (6), magmoms (n) as
``<f8``; tags (n) and numbers (n) as ``<i8``; fixed (n) as bytes 0/1. Every 8-byte field comes
first, so all views are aligned. Numbers are stored as int64 (not uint8 as in version 1): 7 more
bytes per atom buy a view instead of a conversion per read; with the map keys gone, values of
the benchmark's records are 6% larger than in version 1.
"""
from __future__ import annotations

import os
from dataclasses import fields
from typing import Any

import msgpack
import numpy as np

from omni_data.schema import PackedJsonMetadata, PackedMetadata, Record

CODEC_VERSION = 2
READABLE_VERSIONS = (1, 2)

# flag bits of version 2 (bits 0-4 are also version 1's float presence bits)
POSITIONS, CELL, FORCES, STRESS, MAGMOMS, FIXED, TAGS = (1 << k for k in range(7))
_FLOATS = (("positions", POSITIONS), ("cell", CELL), ("forces", FORCES), ("stress", STRESS), ("magmoms", MAGMOMS))

_F8, _I8, _BOOL = np.dtype("<f8"), np.dtype("<i8"), np.dtype(bool)
_PBC = [np.array([bool(p & 1), bool(p & 2), bool(p & 4)]) for p in range(8)]
_ND = np.ndarray
_NEW = object.__new__
_UNPACKB = msgpack.unpackb

# The fast path fills a Record's __dict__ directly (no __init__: the codec already guarantees
# dtypes and shapes). It is used only while these are exactly Record's fields.
_ORDER = ("numbers", "positions", "id", "dataset", "task", "cell", "pbc", "energy", "energy_kind",
          "forces", "stress", "magmoms", "charge", "spin", "fixed", "tags", "weight", "source_file",
          "source_index", "metadata")
_FAST = tuple(f.name for f in fields(Record)) == _ORDER and not hasattr(Record, "__post_init__") \
    and not hasattr(Record, "__slots__")

# The C decoder (``_fastcodec.c``, built at install when a compiler is there): the same Record
# as the Python fast path below, about 2.7x faster, with the metadata left packed until it is read
# (``schema._Metadata``). It answers NotImplemented for anything but a well-formed version-2
# value, which then takes the Python path (and its errors). OMNI_PURE_PYTHON_CODEC=1 turns it off.
try:
    from omni_data.store import _fastcodec
except ImportError:  # no compiler at install time: pure Python
    _fastcodec = None
decode_c = read_row_c = read_rows_c = None
"""The C decoder, ``decode_c(value) -> Record | NotImplemented``, ``read_row_c(get, row)``
(LMDB row key, lookup and decode in one call: ``lmdb.LmdbShard.record``) and
``read_rows_c(get, rows)`` (the same for a list: ``LmdbShard.records``), or None."""
if _fastcodec is not None and _FAST and os.environ.get("OMNI_PURE_PYTHON_CODEC", "") in ("", "0"):
    _fastcodec.configure(Record, PackedMetadata, PackedJsonMetadata)
    decode_c, read_row_c, read_rows_c = _fastcodec.decode_v2, _fastcodec.read_row, _fastcodec.read_rows
ACCELERATED = decode_c is not None


def encode_record(record: Record) -> bytes:
    """Serialise one (normalized) record to version-2 bytes; the inverse of ``decode_record``."""
    numbers = np.asarray(record.numbers).reshape(-1)
    n = int(numbers.size)
    p0, p1, p2 = np.asarray(record.pbc, dtype=bool).reshape(3).tolist()
    flags = 0
    parts: list[bytes] = []
    for name, bit in _FLOATS:
        value = getattr(record, name)
        if value is not None:
            flags |= bit
            parts.append(_bytes(value, _F8))
    if record.tags is not None:
        flags |= TAGS
        parts.append(np.ascontiguousarray(record.tags, dtype=_I8).reshape(n).tobytes())
    parts.append(_bytes(numbers, _I8))
    if record.fixed is not None:
        flags |= FIXED
        parts.append(np.ascontiguousarray(record.fixed, dtype=_BOOL).reshape(n).tobytes())
    doc = [
        CODEC_VERSION, record.id, record.dataset, record.task, n, flags,
        int(p0) | int(p1) << 1 | int(p2) << 2, b"".join(parts),
        None if record.energy is None else float(record.energy), record.energy_kind,
        None if record.charge is None else float(record.charge),
        None if record.spin is None else int(record.spin),
        float(record.weight), record.source_file, int(record.source_index), record.metadata or None,
    ]
    try:
        return msgpack.packb(doc, use_bin_type=True)
    except TypeError as exc:
        raise ValueError(f"record {record.id!r}: metadata cannot be stored ({exc}); use plain JSON types") from None


def _bytes(value: Any, dtype: np.dtype) -> bytes:
    """``value`` as C-order bytes of ``dtype`` (``tobytes`` is C-order even for a strided view)."""
    if type(value) is np.ndarray and value.dtype == dtype:
        return value.tobytes()
    return np.ascontiguousarray(value, dtype=dtype).tobytes()


def decode_record(value: bytes | memoryview) -> Record:
    """Rebuild a ``Record`` from ``encode_record`` bytes (arrays are writable, own their memory)."""
    if decode_c is not None:
        record = decode_c(value)
        if record is not NotImplemented:
            return record
    return decode_record_py(value)


def decode_record_py(value: bytes | memoryview) -> Record:
    """``decode_record`` in pure Python (the reference the C decoder is tested against)."""
    d = _UNPACKB(value)
    if type(d) is not list:
        return _decode_v1(d)
    if d[0] != 2:
        raise ValueError(f"record codec version {d[0]!r} is not one of {READABLE_VERSIONS}")
    n, flags = d[4], d[5]
    # one writable copy of the buffer; every array is a view into it
    buf = bytearray(d[7])
    pos = 0
    positions = cell = forces = stress = magmoms = tags = fixed = None
    if flags & 1:
        positions = _ND((n, 3), _F8, buf, 0)
        pos = 24 * n
    if flags & 2:
        cell = _ND((3, 3), _F8, buf, pos)
        pos += 72
    if flags & 4:
        forces = _ND((n, 3), _F8, buf, pos)
        pos += 24 * n
    if flags & 8:
        stress = _ND((6,), _F8, buf, pos)
        pos += 48
    if flags & 16:
        magmoms = _ND((n,), _F8, buf, pos)
        pos += 8 * n
    if flags & 64:
        tags = _ND((n,), _I8, buf, pos)
        pos += 8 * n
    numbers = _ND((n,), _I8, buf, pos)
    pos += 8 * n
    if flags & 32:
        fixed = _ND((n,), _BOOL, buf, pos)
        pos += n
    if pos != len(buf):
        raise ValueError(f"record {d[1]!r}: array buffer holds {len(buf)} bytes, fields need {pos}")
    if not _FAST:  # Record grew a field or an __init__ hook: take the safe path
        return Record(numbers=numbers, positions=positions, id=d[1], dataset=d[2], task=d[3], cell=cell,
                      pbc=_PBC[d[6]].copy(), energy=d[8], energy_kind=d[9], forces=forces, stress=stress,
                      magmoms=magmoms, charge=d[10], spin=d[11], fixed=fixed, tags=tags, weight=d[12],
                      source_file=d[13], source_index=d[14], metadata=d[15] or {})
    # A Record without running __init__: the codec already guarantees every dtype and shape.
    record = _NEW(Record)
    record.__dict__ = {
        "numbers": numbers, "positions": positions, "id": d[1], "dataset": d[2], "task": d[3],
        "cell": cell, "pbc": _PBC[d[6]].copy(), "energy": d[8], "energy_kind": d[9], "forces": forces,
        "stress": stress, "magmoms": magmoms, "charge": d[10], "spin": d[11], "fixed": fixed, "tags": tags,
        "weight": d[12], "source_file": d[13], "source_index": d[14], "metadata": d[15] or {},
    }
    return record


def _decode_v1(d: dict[str, Any]) -> Record:
    """Version-1 value (a msgpack map, ``docs/schema.md``), as written before codec 2."""
    if not isinstance(d, dict) or d.get("v") != 1:
        version = d.get("v") if isinstance(d, dict) else None
        raise ValueError(f"record codec version {version!r} is not one of {READABLE_VERSIONS}")
    n, flags = d["n"], d["f"]
    buf = np.frombuffer(d["B"], dtype=_F8).copy()
    arrays: list[np.ndarray | None] = [None] * 5
    pos = 0
    for k, (size, shape) in enumerate(((3 * n, (n, 3)), (9, (3, 3)), (3 * n, (n, 3)), (6, (6,)), (n, (n,)))):
        if flags & (1 << k):
            arrays[k] = buf[pos:pos + size].reshape(shape)
            pos += size
    fixed, tags = d["X"], d["T"]
    return Record(
        numbers=np.frombuffer(d["Z"], dtype=d["Zt"]).astype(np.int64), positions=arrays[0], id=d["id"],
        dataset=d["ds"], task=d["tk"], cell=arrays[1], pbc=_PBC[d["P"]].copy(), energy=d["E"],
        energy_kind=d["EK"], forces=arrays[2], stress=arrays[3], magmoms=arrays[4], charge=d["q"],
        spin=d["s"], fixed=None if fixed is None else np.frombuffer(fixed, dtype=bool).copy(),
        tags=None if tags is None else np.frombuffer(tags, dtype="<i8").copy(), weight=d["w"],
        source_file=d["sf"], source_index=d["si"], metadata=d["md"] or {},
    )


def decode_header(value: bytes | memoryview) -> dict[str, Any]:
    """The scalar fields of an encoded record (id, dataset, task, n_atoms, energy, ...)."""
    d = _UNPACKB(value)
    if type(d) is list:
        if d[0] != 2:
            raise ValueError(f"record codec version {d[0]!r} is not one of {READABLE_VERSIONS}")
        return {"id": d[1], "dataset": d[2], "task": d[3], "n_atoms": d[4], "energy": d[8],
                "energy_kind": d[9], "charge": d[10], "spin": d[11], "weight": d[12],
                "source_file": d[13], "source_index": d[14]}
    return {"id": d["id"], "dataset": d["ds"], "task": d["tk"], "n_atoms": d["n"], "energy": d["E"],
            "energy_kind": d["EK"], "charge": d["q"], "spin": d["s"], "weight": d["w"],
            "source_file": d["sf"], "source_index": d["si"]}
