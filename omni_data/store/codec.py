"""Record <-> bytes of one LMDB value (codec 3, store format 2), in plain Python.

A value is ``crc32c (4 bytes, little-endian) | kind (1 byte) | body``. The CRC (CRC-32C, the
``crc32c`` package: hardware-accelerated, 0.5 us for a 1 KB value) covers everything after it,
so a flipped byte anywhere in the value is an error, never another record. ``kind`` says how
the body is stored: ``RAW``, or ``LZ4`` (an LZ4 block with its size, compressed on its own and
kept only where it saves at least ``MIN_SAVING`` bytes). Why LZ4 and not zstd: on the real
oxide rows zstd -9 saves 15% more, but decompresses 2-6x slower (2.3-6.6 us against 1.1-1.6 us
per record), which alone would be a quarter of a read. The body is a msgpack array:

``[row, id, dataset, task, n, flags, pbc bits, energy, energy_kind, charge, spin, weight,
source_file, source_index, metadata, B]``

* ``row`` is the value's own row, checked on read: a value found under another key (a damaged
  B-tree page) is an error, not the record of that row.
* ``dataset``, ``task``, ``energy_kind``, ``source_file`` are a string, or an int indexing the
  shard's string table (``strings``, stored once in the shard's ``__index__``): a shard usually
  holds one dataset, one task and one source file.
* ``metadata`` is msgpack bytes (JSON text when it holds an integer beyond 64 bits; nil when
  empty), unpacked when ``record.metadata`` is first read (``schema.PackedMetadata``): training
  never reads it.
* ``B`` is one little-endian buffer holding, in this order and only where ``flags`` says so:
  positions (3n), cell (9), forces (3n), stress (6), magmoms (n) as float64; tags (n) and
  numbers (n) as int64; fixed (n) as bytes 0/1. Every 8-byte field comes first, so each array
  is an aligned numpy view into one writable copy of ``B``.

Precision: every float is stored as float64, bit for bit (docs/store.md, "Precision").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import lz4.block
import msgpack
import numpy as np
from crc32c import crc32c

from omni_data.schema import PackedJsonMetadata, PackedMetadata, Record

__all__ = ["CorruptValue", "encode_record", "check_value", "decode_record", "decode_header"]

CODEC_VERSION = 3
RAW, LZ4 = 0x30, 0x32
MIN_SAVING = 16
"""A value is kept compressed only when that saves at least this many bytes."""

POSITIONS, CELL, FORCES, STRESS, MAGMOMS, FIXED, TAGS = (1 << k for k in range(7))
_FLOATS = (("positions", POSITIONS), ("cell", CELL), ("forces", FORCES), ("stress", STRESS), ("magmoms", MAGMOMS))
_F8, _I8, _BOOL = np.dtype("<f8"), np.dtype("<i8"), np.dtype(bool)
_PBC = [np.array([bool(p & 1), bool(p & 2), bool(p & 4)]) for p in range(8)]
_ND = np.ndarray
_UNPACKB = msgpack.unpackb
_CRC = crc32c
_COMPRESS, _DECOMPRESS = lz4.block.compress, lz4.block.decompress
_NEW = object.__new__
_FIELDS = tuple(f.name for f in fields(Record))


class CorruptValue(ValueError):
    """A value whose checksum, row or layout is wrong (the caller names the shard and row)."""


def _bytes(value: Any, dtype: np.dtype) -> bytes:
    return np.ascontiguousarray(value, dtype=dtype).tobytes()


def _string(value: str, strings: dict[str, int] | None) -> str | int:
    if strings is None:
        return value
    return strings.setdefault(value, len(strings))


def encode_record(record: Record, row: int = 0, strings: dict[str, int] | None = None, compress: bool = True) -> bytes:
    """One (normalized) record as codec-3 bytes; ``strings`` (a dict the writer keeps per shard)
    collects the shard's repeated strings, None keeps them in the value."""
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
        parts.append(_bytes(np.reshape(record.tags, n), _I8))
    parts.append(_bytes(numbers, _I8))
    if record.fixed is not None:
        flags |= FIXED
        parts.append(_bytes(np.reshape(record.fixed, n), _BOOL))
    try:
        metadata = _pack_metadata(record.metadata) if record.metadata else None
        body = msgpack.packb(
            [
                row,
                record.id,
                _string(record.dataset, strings),
                _string(record.task, strings),
                n,
                flags,
                int(p0) | int(p1) << 1 | int(p2) << 2,
                None if record.energy is None else float(record.energy),
                _string(record.energy_kind, strings),
                None if record.charge is None else float(record.charge),
                None if record.spin is None else int(record.spin),
                float(record.weight),
                _string(record.source_file, strings),
                int(record.source_index),
                metadata,
                b"".join(parts),
            ],
            use_bin_type=True,
        )
    except TypeError as exc:
        raise ValueError(f"record {record.id!r}: metadata cannot be stored ({exc}); use plain JSON types") from None
    kind = RAW
    if compress:
        packed = _COMPRESS(body, mode="high_compression", compression=3, store_size=True)
        if len(packed) + MIN_SAVING <= len(body):
            body, kind = packed, LZ4
    tail = bytes((kind,)) + body
    return _CRC(tail).to_bytes(4, "little") + tail


def _pack_metadata(metadata: dict[str, Any]) -> bytes | str:
    """msgpack bytes of ``metadata``; JSON text when it holds an integer beyond 64 bits (msgpack
    cannot hold one; the reader unpacks either, ``schema.PackedJsonMetadata``)."""
    try:
        return msgpack.packb(metadata, use_bin_type=True)
    except OverflowError:
        import json

        return json.dumps(metadata, sort_keys=True)


def check_value(value: bytes | memoryview) -> bytes | memoryview:
    """The body of ``value`` (decompressed) after its checksum is checked; ``CorruptValue`` else."""
    if len(value) < 6 or _CRC(value[4:]) != int.from_bytes(value[:4], "little"):
        raise CorruptValue("checksum mismatch (damaged value)")
    kind = value[4]
    if kind == LZ4:
        try:
            return _DECOMPRESS(value[5:])
        except Exception as exc:  # lz4.block.LZ4BlockError: the checksum passed, so a writer bug
            raise CorruptValue(f"lz4 body does not decompress ({exc})") from None
    if kind == RAW:
        return value[5:]
    raise CorruptValue(f"value kind {kind:#x} is not one of codec {CODEC_VERSION}'s (a newer Omni?)")


def decode_record(value: bytes | memoryview, row: int | None = None, strings: Sequence[str] = ()) -> Record:
    """Rebuild the ``Record`` of ``encode_record`` bytes (arrays writable, owning one buffer).

    ``row`` (when given) must be the value's own row. Raises ``CorruptValue`` on any damage."""
    # check_value, inlined: this is the hot path of every read
    if len(value) < 6 or _CRC(value[4:]) != int.from_bytes(value[:4], "little"):
        raise CorruptValue("checksum mismatch (damaged value)")
    kind = value[4]
    try:
        if kind == LZ4:
            d = _UNPACKB(_DECOMPRESS(value[5:]))
        elif kind == RAW:
            d = _UNPACKB(value[5:])
        else:
            raise CorruptValue(f"value kind {kind:#x} is not one of codec {CODEC_VERSION}'s (a newer Omni?)")
        if row is not None and d[0] != row:
            raise CorruptValue(f"value belongs to row {d[0]!r}")
        return _record(d, strings)
    except CorruptValue:
        raise
    except Exception as exc:  # msgpack, lz4 or layout errors behind a matching checksum: a writer bug
        raise CorruptValue(f"undecodable value ({type(exc).__name__}: {exc})") from None


def _record(d: list, strings: Sequence[str]) -> Record:
    (_row, rid, dataset, task, n, flags, pbc, energy, kind, charge, spin, weight, source, index, meta, raw) = d
    buf = bytearray(raw)  # one writable copy; every array is a view into it
    positions = cell = forces = stress = magmoms = tags = fixed = None
    pos = 0
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
    if pos != len(buf) or not flags & 1:
        raise CorruptValue(f"record {rid!r}: array buffer holds {len(buf)} bytes, its fields need {pos}")
    # A Record without running the dataclass __init__ (a third of a read): the layout above
    # already guarantees every dtype and shape. Only public Python: a new instance's __dict__.
    record = _NEW(Record)
    record.__dict__ = {
        "numbers": numbers,
        "positions": positions,
        "id": rid,
        "dataset": dataset if type(dataset) is str else strings[dataset],
        "task": task if type(task) is str else strings[task],
        "cell": cell,
        "pbc": _PBC[pbc].copy(),
        "energy": energy,
        "energy_kind": kind if type(kind) is str else strings[kind],
        "forces": forces,
        "stress": stress,
        "magmoms": magmoms,
        "charge": charge,
        "spin": spin,
        "fixed": fixed,
        "tags": tags,
        "weight": weight,
        "source_file": source if type(source) is str else strings[source],
        "source_index": index,
        "metadata": (PackedMetadata(meta) if type(meta) is bytes else PackedJsonMetadata(meta.encode()))
        if meta
        else {},
    }
    return record


def decode_header(value: bytes | memoryview, strings: Sequence[str] = ()) -> dict[str, Any]:
    """The scalar fields of an encoded record (checked like ``decode_record``)."""
    record = decode_record(value, None, strings)
    return {
        "id": record.id,
        "dataset": record.dataset,
        "task": record.task,
        "n_atoms": record.n_atoms,
        "energy": record.energy,
        "energy_kind": record.energy_kind,
        "charge": record.charge,
        "spin": record.spin,
        "weight": record.weight,
        "source_file": record.source_file,
        "source_index": record.source_index,
    }
