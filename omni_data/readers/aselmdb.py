"""fairchem ``.aselmdb`` reader (OMat24, sAlex, OMol25, ODAC): LMDB + zlib + JSON, read directly.

Layout (``ase_db_backends.aselmdb.LMDBDatabase``): one single-file LMDB (``subdir=False``); row
``i`` is stored under key ``b"<i>"`` as zlib-compressed ASE JSON (``ase.io.jsonio``: numpy arrays as
``{"__ndarray__": [shape, dtype, flat]}``); ``b"nextid"`` holds the next free id, ``b"deleted_ids"``
the ids removed since, ``b"metadata"`` optional database metadata. Row ids are
``range(1, nextid)`` minus the deleted ones; an id that is neither present nor deleted is a
``Rejected`` (``missing:``), never skipped. Reading the bytes directly avoids building an ASE
``AtomsRow`` per row. OMol25 keeps ``charge`` and ``spin`` (multiplicity) in ``row.data``.
The file is checked against its meta pages before it is mapped (``_lmdb_check``): a truncated
download is a ReaderError naming both sizes, not a SIGBUS.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.readers import Partition, ReaderError, ReadOptions, frame_ranges
from omni_data.readers._ase_rows import record_from_row
from omni_data.readers._common import source_label
from omni_data.readers._lmdb_check import check_lmdb_file, damaged, lmdb_errors
from omni_data.record_checks import problem
from omni_data.schema import Record, Rejected

__all__ = ["decode", "partitions", "read"]

try:  # optional speed-up; identical results (tested against the json path)
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def _hook(obj: dict[str, Any]) -> Any:
    """json object hook decoding ASE's ndarray encoding (ase.io.jsonio)."""
    if "__ndarray__" in obj:
        shape, dtype, flat = obj["__ndarray__"]
        return np.array(flat, dtype=dtype).reshape(shape)
    if "__complex_ndarray__" in obj:
        real, imag = obj["__complex_ndarray__"]
        return np.array(real) + 1j * np.array(imag)
    return obj


def _arrays(obj: Any) -> Any:
    """Decode ASE's ndarray encoding throughout a parsed JSON tree (for parsers without hooks)."""
    if isinstance(obj, dict):
        if "__ndarray__" in obj or "__complex_ndarray__" in obj:
            return _hook(obj)
        return {k: _arrays(v) for k, v in obj.items()}
    if isinstance(obj, list) and obj and isinstance(obj[0], (dict, list)):
        return [_arrays(v) for v in obj]
    return obj


def decode(value: bytes) -> Any:
    """One stored value: zlib-decompress, then ASE-JSON decode (orjson when installed: it comes
    with pymatgen and parses about 3x faster; the standard library otherwise)."""
    raw = zlib.decompress(value)
    if _orjson is not None:
        return _arrays(_orjson.loads(raw))
    return json.loads(raw.decode("utf-8"), object_hook=_hook)


def _open(path: str | Path) -> Any:
    """A read-only, lock-free environment, after checking the file is whole (no SIGBUS)."""
    import lmdb

    if not Path(path).is_file():
        raise ReaderError(f"{path}: no such .aselmdb file")
    check_lmdb_file(path)
    try:
        return lmdb.open(str(path), subdir=False, readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as exc:
        raise ReaderError(f"{path}: not a readable LMDB file ({exc})") from exc


def _row_ids(txn: Any, path: str | Path, lo: int | None = None, hi: int | None = None) -> list[int]:
    """Live row ids (optionally only ``lo..hi`` inclusive): ``range(1, nextid)`` minus deleted_ids."""
    raw = txn.get(b"nextid")
    if raw is None:
        raise ReaderError(f"{path}: LMDB has no 'nextid' key; not an ASE LMDB database")
    try:
        nextid = int(decode(raw))
        deleted = txn.get(b"deleted_ids")
        gone = set(decode(deleted)) if deleted is not None else set()
    except (zlib.error, ValueError, TypeError) as exc:
        raise ReaderError(f"{path}: cannot decode nextid/deleted_ids ({exc})") from exc
    first = 1 if lo is None else max(1, int(lo))
    last = nextid - 1 if hi is None else min(nextid - 1, int(hi))
    return [i for i in range(first, last + 1) if i not in gone]


def partitions(path: Path, target: int) -> list[Partition]:
    """Chunks of about ``target`` live row ids, each an inclusive id range."""
    env = _open(path)
    try:
        with lmdb_errors(path), env.begin() as txn:
            ids = _row_ids(txn, path)
    finally:
        env.close()
    return [
        Partition(str(path), a, b, (("id_min", ids[a]), ("id_max", ids[b - 1])))
        for a, b in frame_ranges(len(ids), target)
    ]


def _metadata(txn: Any, path: str | Path) -> dict[str, Any]:
    """The database metadata (units live here); ReaderError naming the file if it does not decode."""
    raw = txn.get(b"metadata")
    if raw is None:
        return {}
    try:
        meta = decode(raw)
    except (zlib.error, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise ReaderError(f"{path}: cannot decode the 'metadata' key ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict):
        raise ReaderError(f"{path}: the 'metadata' key holds a {type(meta).__name__}, not a JSON object")
    return meta


def read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]:
    """Records of the partition's rows, in id order."""
    import lmdb

    label = source_label(part.path, opts)
    env = _open(part.path)
    row_id: int | None = None
    try:
        with env.begin() as txn:
            lo, hi = part.get("id_min"), part.get("id_max")
            if lo is None:  # a hand-made partition: positions start..stop of all live ids
                ids = _row_ids(txn, part.path)[part.start : part.stop]
            else:
                ids = _row_ids(txn, part.path, lo, hi)
            meta = _metadata(txn, part.path)
            unit_dict = meta.get("_property_unit_dict") or {}
            for index, row_id in enumerate(ids, start=part.start):
                yield _row(
                    txn.get(str(row_id).encode("ascii")),
                    row_id,
                    index,
                    label,
                    part.path,
                    opts,
                    unit_dict,
                    meta.get("_distance_unit"),
                )
    except lmdb.Error as exc:  # a damaged page: the rest of this partition cannot be reached
        raise damaged(part.path, exc, f"at row id {row_id}" if row_id is not None else "") from exc
    finally:
        env.close()


def _row(
    value: bytes | None,
    row_id: int,
    index: int,
    label: str,
    path: str,
    opts: ReadOptions,
    unit_dict: dict[str, str],
    distance_unit: str | None,
) -> Record | Rejected:
    source_id = f"{label}:{row_id}"
    if value is None:
        return Rejected(
            path,
            index,
            f"missing:row id {row_id} absent from the LMDB and not in deleted_ids",
            opts.dataset,
            source_id,
            {"row_id": row_id},
        )
    try:
        row = decode(value)
    except (zlib.error, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        return Rejected(
            path,
            index,
            f"parse:row id {row_id} is not zlib-compressed ASE JSON ({exc})",
            opts.dataset,
            source_id,
            {"row_id": row_id},
        )
    if not isinstance(row, dict):
        return Rejected(
            path,
            index,
            f"parse:row id {row_id} holds a {type(row).__name__}, not a JSON object",
            opts.dataset,
            source_id,
            {"row_id": row_id},
        )
    try:
        rec = record_from_row(
            row,
            row.get("key_value_pairs") or {},
            row.get("data") or {},
            source_id=source_id,
            path=path,
            index=index,
            opts=opts,
            unit_dict=unit_dict,
            distance_unit=distance_unit,
        )
    except (ValueError, KeyError, TypeError) as exc:
        return Rejected(path, index, f"bad_value:{exc} (row id {row_id})", opts.dataset, source_id, {"row_id": row_id})
    rec.metadata["row_id"] = row_id
    reason = problem(rec)
    if reason is not None:
        return Rejected(path, index, f"{reason} (row id {row_id})", opts.dataset, source_id, {"row_id": row_id})
    return rec.normalized()
