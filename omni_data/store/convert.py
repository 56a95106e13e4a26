"""``convert_store(OLD, NEW)``: rewrite a store of store format 1 as store format 2.

Store format 1 (Omni before store v2) kept every record twice: an Arrow IPC file and an LMDB
file per shard, whose values were codec 1 (a msgpack map) or codec 2 (a msgpack array with one
raw buffer). This module holds the one reader of that format Omni keeps: it scans each old
LMDB shard's ``r<uint64 row>`` keys in order with a cursor (py-lmdb's public API) and decodes
the values in plain Python; a shard without an LMDB file is read from its Arrow file. Each old
shard becomes a new shard of the same name (so sidecars keyed by shard name stay valid); its
quarantine file, sections (references, splits, ...), runs and sidecars are copied; the id index
is built afresh. OLD is only read.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from omni_data.schema import Record

__all__ = ["decode_v1_value", "old_records", "convert_store"]

_F8, _I8 = np.dtype("<f8"), np.dtype("<i8")
_PBC = [np.array([bool(p & 1), bool(p & 2), bool(p & 4)]) for p in range(8)]


def decode_v1_value(value: bytes) -> Record:
    """A record value of store format 1 (codec 1 map or codec 2 array)."""
    d = msgpack.unpackb(value)
    if isinstance(d, dict):
        return _codec1(d)
    if not isinstance(d, list) or d[0] != 2:
        raise ValueError(f"not a store-format-1 record value (codec {d[0] if isinstance(d, list) else d!r})")
    n, flags = d[4], d[5]
    buf = bytearray(d[7])
    arrays: dict[str, Any] = {}
    pos = 0
    for name, bit, shape, dtype, size in (
        ("positions", 1, (n, 3), _F8, 24 * n),
        ("cell", 2, (3, 3), _F8, 72),
        ("forces", 4, (n, 3), _F8, 24 * n),
        ("stress", 8, (6,), _F8, 48),
        ("magmoms", 16, (n,), _F8, 8 * n),
        ("tags", 64, (n,), _I8, 8 * n),
    ):
        if flags & bit:
            arrays[name] = np.ndarray(shape, dtype, buf, pos).copy()
            pos += size
    numbers = np.ndarray((n,), _I8, buf, pos).copy()
    pos += 8 * n
    if flags & 32:
        arrays["fixed"] = np.frombuffer(bytes(buf[pos : pos + n]), dtype=bool).copy()
        pos += n
    if pos != len(buf):
        raise ValueError(f"record {d[1]!r}: array buffer holds {len(buf)} bytes, fields need {pos}")
    return Record(
        numbers=numbers,
        id=d[1],
        dataset=d[2],
        task=d[3],
        pbc=_PBC[d[6]].copy(),
        energy=d[8],
        energy_kind=d[9],
        charge=d[10],
        spin=d[11],
        weight=d[12],
        source_file=d[13],
        source_index=d[14],
        metadata=d[15] or {},
        **arrays,
    )


def _codec1(d: dict[str, Any]) -> Record:
    if d.get("v") != 1:
        raise ValueError(f"record codec version {d.get('v')!r} is not store format 1's")
    n, flags = d["n"], d["f"]
    buf = np.frombuffer(d["B"], dtype=_F8).copy()
    out: list[np.ndarray | None] = [None] * 5
    pos = 0
    for k, (size, shape) in enumerate(((3 * n, (n, 3)), (9, (3, 3)), (3 * n, (n, 3)), (6, (6,)), (n, (n,)))):
        if flags & (1 << k):
            out[k] = buf[pos : pos + size].reshape(shape)
            pos += size
    fixed, tags = d["X"], d["T"]
    if out[0] is None:
        raise ValueError(f"record {d.get('id')!r}: store format 1 value without positions")
    return Record(
        numbers=np.frombuffer(d["Z"], dtype=d["Zt"]).astype(np.int64),
        positions=out[0],
        id=d["id"],
        dataset=d["ds"],
        task=d["tk"],
        cell=out[1],
        pbc=_PBC[d["P"]].copy(),
        energy=d["E"],
        energy_kind=d["EK"],
        forces=out[2],
        stress=out[3],
        magmoms=out[4],
        charge=d["q"],
        spin=d["s"],
        fixed=None if fixed is None else np.frombuffer(fixed, dtype=bool).copy(),
        tags=None if tags is None else np.frombuffer(tags, dtype="<i8").copy(),
        weight=d["w"],
        source_file=d["sf"],
        source_index=d["si"],
        metadata=d["md"] or {},
    )


def _lmdb_records(path: Path, n: int) -> Iterator[Record]:
    import lmdb

    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False, readahead=False)
    try:
        with env.begin() as txn:
            cursor = txn.cursor()
            row = 0
            if cursor.set_range(b"r"):
                for key, value in cursor:
                    if not key.startswith(b"r") or len(key) != 9:
                        break
                    if struct.unpack(">Q", key[1:])[0] != row:
                        raise ValueError(f"{path}: row key {key!r} out of order (expected row {row})")
                    yield decode_v1_value(value)
                    row += 1
            if row != n:
                raise ValueError(f"{path}: {row} rows, the old catalog says {n}")
    finally:
        env.close()


def _arrow_records(path: Path) -> Iterator[Record]:
    import pyarrow as pa

    with pa.memory_map(str(path), "r") as source:
        table = pa.ipc.open_file(source).read_all()
    table.validate(full=True)
    cols = table.to_pydict()
    for k in range(table.num_rows):
        n = cols["n_atoms"][k]

        def arr(name: str, shape: tuple[int, ...], dtype: Any) -> Any:
            value = cols[name][k]
            return None if value is None else np.asarray(value, dtype=dtype).reshape(shape)

        meta = cols["metadata"][k]
        yield Record(
            numbers=arr("numbers", (n,), np.int64),
            positions=arr("positions", (n, 3), np.float64),
            id=cols["id"][k],
            dataset=cols["dataset"][k],
            task=cols["task"][k],
            cell=arr("cell", (3, 3), np.float64),
            pbc=arr("pbc", (3,), bool),
            energy=cols["energy"][k],
            energy_kind=cols["energy_kind"][k],
            forces=arr("forces", (n, 3), np.float64),
            stress=arr("stress", (6,), np.float64),
            magmoms=arr("magmoms", (n,), np.float64),
            charge=cols["charge"][k],
            spin=cols["spin"][k],
            fixed=arr("fixed", (n,), bool),
            tags=arr("tags", (n,), np.int64),
            weight=cols["weight"][k],
            source_file=cols["source_file"][k],
            source_index=cols["source_index"][k],
            metadata=json.loads(meta) if meta else {},
        )


def old_records(old: Path, entry: dict[str, Any]) -> Iterator[Record]:
    """Every record of one store-format-1 shard entry, in row order."""
    files = entry["files"]
    if "lmdb" in files:
        return _lmdb_records(old / files["lmdb"]["file"], int(entry["records"]))
    return _arrow_records(old / files["arrow"]["file"])


def convert_store(old: str | Path, new: str | Path, progress: bool = False) -> dict[str, Any]:
    """Write store-format-1 store ``old`` as a store-format-2 store ``new`` (which must not
    exist); returns a summary {"shards", "records", "old_bytes", "new_bytes"}."""
    from tqdm import tqdm

    from omni_data.store.catalog import STORE_FORMAT, update_catalog
    from omni_data.store.idindex import build_id_index
    from omni_data.store.writer import register_shard, write_shard_files

    old, new = Path(old), Path(new)
    data = json.loads((old / "catalog.json").read_text(encoding="utf-8"))
    fmt = data.get("store_format", 1)
    if fmt == STORE_FORMAT:
        raise ValueError(f"{old}: already store format {STORE_FORMAT}; nothing to convert")
    if fmt != 1:
        raise ValueError(f"{old}: store format {fmt!r}, this converter reads format 1")
    if new.exists() and any(new.iterdir()):
        raise FileExistsError(f"{new}: exists and is not empty; give a new folder")
    new.mkdir(parents=True, exist_ok=True)
    old_bytes = new_bytes = records = 0
    for entry in tqdm(data["shards"], unit="shard", disable=not progress, desc=f"convert {old.name}"):
        recs = list(old_records(old, entry))
        info = write_shard_files(
            new, entry["name"], recs, partition=entry.get("partition"), partition_hash=entry.get("partition_hash")
        )
        info.quarantined = int(entry.get("quarantined", 0))
        info.quarantined_by_reason = dict(entry.get("quarantined_by_reason", {}))
        if entry.get("quarantine"):
            q = entry["quarantine"]
            (new / q["file"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(old / q["file"], new / q["file"])
            info.quarantine = dict(q)
        register_shard(new, info)
        records += len(recs)
        old_bytes += sum(int(m["bytes"]) for m in entry["files"].values())
        new_bytes += sum(int(m["bytes"]) for m in info.files.values())
    if (old / "sidecars").is_dir():
        shutil.copytree(old / "sidecars", new / "sidecars", dirs_exist_ok=True)
    sections = {k: v for k, v in (data.get("sections") or {}).items() if k != "id_index"}

    def carry(doc: dict[str, Any]) -> None:
        doc["sections"].update(sections)
        doc["runs"] = list(data.get("runs", [])) + [
            {"kind": "convert-store", "from": str(old), "from_store_format": fmt, "to_store_format": STORE_FORMAT}
        ]
        doc["created"] = data.get("created", doc["created"])

    update_catalog(new, carry)
    if data["shards"]:
        build_id_index(new)
    return {"shards": len(data["shards"]), "records": records, "old_bytes": old_bytes, "new_bytes": new_bytes}
