"""Record <-> compact bytes for LMDB values: msgpack around raw little-endian numpy buffers.

Why not pickle: values must be readable without executing code and from other languages.
Why raw buffers: ``np.frombuffer`` on the value is a zero-parse decode, which is what makes
random access fast (see ``docs/store.md``). The float64 fields (positions, cell, forces, stress,
magmoms) share one little-endian buffer ``B`` with a presence bitmask ``f``; numbers are uint8,
tags int64, fixed bool. A missing label is absent from the buffer and decodes to ``None``.
"""
from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from omni_data.schema import Record

CODEC_VERSION = 1

# Float64 fields packed back to back in one buffer ("B"), in this order; bit k of "f" says
# whether field k is present. One copy of one buffer, then views, is the cheapest decode.
_FLOATS: tuple[tuple[str, tuple[str | int, ...]], ...] = (
    ("positions", ("n", 3)),
    ("cell", (3, 3)),
    ("forces", ("n", 3)),
    ("stress", (6,)),
    ("magmoms", ("n",)),
)


def encode_record(record: Record) -> bytes:
    """Serialise one (normalized) record to bytes; the inverse of ``decode_record``."""
    numbers = np.asarray(record.numbers)
    z_dtype = "|u1" if numbers.size == 0 or int(numbers.max()) < 256 else "<i8"
    pbc = np.asarray(record.pbc, dtype=bool).reshape(3)
    flags = 0
    parts = []
    for bit, (name, _shape) in enumerate(_FLOATS):
        value = getattr(record, name)
        if value is not None:
            flags |= 1 << bit
            parts.append(np.asarray(value, dtype="<f8").reshape(-1))
    doc: dict[str, Any] = {
        "v": CODEC_VERSION,
        "id": record.id,
        "ds": record.dataset,
        "tk": record.task,
        "n": int(numbers.size),
        "Z": np.ascontiguousarray(numbers, dtype=z_dtype).tobytes(),
        "Zt": z_dtype,
        "P": int(pbc[0]) | int(pbc[1]) << 1 | int(pbc[2]) << 2,
        "f": flags,
        "B": np.concatenate(parts).tobytes() if parts else b"",
        "E": None if record.energy is None else float(record.energy),
        "EK": record.energy_kind,
        "q": None if record.charge is None else float(record.charge),
        "s": None if record.spin is None else int(record.spin),
        "w": float(record.weight),
        "sf": record.source_file,
        "si": int(record.source_index),
        "md": record.metadata or None,
        "X": None if record.fixed is None else np.ascontiguousarray(record.fixed, dtype=bool).tobytes(),
        "T": None if record.tags is None else np.ascontiguousarray(record.tags, dtype="<i8").tobytes(),
    }
    try:
        return msgpack.packb(doc, use_bin_type=True)
    except TypeError as exc:
        raise ValueError(f"record {record.id!r}: metadata cannot be stored ({exc}); use plain JSON types") from None


_PBC = [np.array([bool(p & 1), bool(p & 2), bool(p & 4)]) for p in range(8)]


def decode_record(value: bytes | memoryview) -> Record:
    """Rebuild a ``Record`` from ``encode_record`` bytes (arrays are fresh, writable copies)."""
    d = msgpack.unpackb(value, raw=False)
    if d.get("v") != CODEC_VERSION:
        raise ValueError(f"record codec version {d.get('v')!r} is not {CODEC_VERSION}")
    n = d["n"]
    flags = d["f"]
    # one writable copy of the float buffer; every float field is a view into it
    buf = np.frombuffer(d["B"], dtype="<f8").copy()
    n3 = 3 * n
    arrays: list[np.ndarray | None] = [None] * 5
    pos = 0
    if flags & 1:
        arrays[0] = buf[:n3].reshape(n, 3)
        pos = n3
    if flags & 2:
        arrays[1] = buf[pos:pos + 9].reshape(3, 3)
        pos += 9
    if flags & 4:
        arrays[2] = buf[pos:pos + n3].reshape(n, 3)
        pos += n3
    if flags & 8:
        arrays[3] = buf[pos:pos + 6]
        pos += 6
    if flags & 16:
        arrays[4] = buf[pos:pos + n]
    fixed, tags = d["X"], d["T"]
    return Record(
        numbers=np.frombuffer(d["Z"], dtype=d["Zt"]).astype(np.int64),
        positions=arrays[0],
        id=d["id"],
        dataset=d["ds"],
        task=d["tk"],
        cell=arrays[1],
        pbc=_PBC[d["P"]].copy(),
        energy=d["E"],
        energy_kind=d["EK"],
        forces=arrays[2],
        stress=arrays[3],
        magmoms=arrays[4],
        charge=d["q"],
        spin=d["s"],
        fixed=None if fixed is None else np.frombuffer(fixed, dtype=bool).copy(),
        tags=None if tags is None else np.frombuffer(tags, dtype="<i8").copy(),
        weight=d["w"],
        source_file=d["sf"],
        source_index=d["si"],
        metadata=d["md"] or {},
    )


def decode_header(value: bytes | memoryview) -> dict[str, Any]:
    """The scalar fields of an encoded record (id, dataset, task, n_atoms, energy, ...)."""
    doc = msgpack.unpackb(value, raw=False)
    return {
        "id": doc["id"],
        "dataset": doc["ds"],
        "task": doc["tk"],
        "n_atoms": doc["n"],
        "energy": doc["E"],
        "energy_kind": doc["EK"],
        "charge": doc["q"],
        "spin": doc["s"],
        "weight": doc["w"],
        "source_file": doc["sf"],
        "source_index": doc["si"],
    }
