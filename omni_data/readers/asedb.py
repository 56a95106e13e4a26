"""ASE database reader (sqlite ``.db``): calculator results, or SchNetPack-style ``row.data``.

Partitions are ranges of row ids (read from the ``systems`` table, cheaply, read-only) so a
partition is one indexed ``id`` range query. Rows are decoded by ``ase.db`` itself (it owns the
blob encoding) and converted by ``_ase_rows.record_from_row``. SchNetPack databases keep labels in
``row.data`` with units in the database metadata ``_property_unit_dict``: declare which property is
the energy with ``key_map: {energy: energy_U0}``; its unit (``Ha``) is then read from the metadata.
"""

from __future__ import annotations

import sqlite3
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omni_data.readers import Partition, ReaderError, ReadOptions, frame_ranges
from omni_data.readers._ase_rows import record_from_row
from omni_data.readers._common import source_label
from omni_data.record_checks import problem
from omni_data.schema import Record, Rejected

__all__ = ["partitions", "read"]

_ROW_KEYS = (
    "numbers",
    "positions",
    "cell",
    "pbc",
    "tags",
    "initial_charges",
    "initial_magmoms",
    "energy",
    "free_energy",
    "forces",
    "stress",
    "magmoms",
    "unique_id",
)


def _row_ids(path: Path) -> list[int]:
    if not Path(path).is_file():
        raise ReaderError(f"{path}: no such ASE database")
    try:
        con = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        try:
            return [r[0] for r in con.execute("SELECT id FROM systems ORDER BY id")]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise ReaderError(f"{path}: not a readable ASE sqlite database ({exc})") from exc


def partitions(path: Path, target: int) -> list[Partition]:
    """Chunks of about ``target`` rows, each an inclusive row-id range ``id_min..id_max``."""
    ids = _row_ids(path)
    return [
        Partition(str(path), a, b, (("id_min", ids[a]), ("id_max", ids[b - 1])))
        for a, b in frame_ranges(len(ids), target)
    ]


def _connect(path: str) -> Any:
    import ase.db

    return ase.db.connect(path, type="db", use_lock_file=False)


def read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]:
    """Records of rows ``id_min..id_max`` (positions ``start..stop`` in id order)."""
    if not Path(part.path).is_file():
        raise ReaderError(f"{part.path}: no such ASE database")
    label = source_label(part.path, opts)
    try:
        db = _connect(part.path)
        meta = db.metadata or {}
    except Exception as exc:  # sqlite/json errors from ase.db: the file cannot be used at all
        raise ReaderError(f"{part.path}: ase.db cannot open it ({exc})") from exc
    unit_dict = meta.get("_property_unit_dict") or {}
    distance_unit = meta.get("_distance_unit")
    lo, hi = part.get("id_min"), part.get("id_max")
    if lo is None:
        ids = _row_ids(Path(part.path))[part.start : part.stop]
        if not ids:
            return
        lo, hi = ids[0], ids[-1]
    for index, (row_id, row) in enumerate(_rows(db, part.path, int(lo), int(hi)), start=part.start):
        source_id = f"{label}:{row_id}"
        if isinstance(row, Exception):
            yield Rejected(
                part.path,
                index,
                f"parse:row id {row_id} cannot be decoded by ase.db ({type(row).__name__}: {row})",
                opts.dataset,
                source_id,
                {"row_id": row_id},
            )
            continue
        try:
            raw = {k: row.get(k) for k in _ROW_KEYS}
            raw["constraints"] = getattr(row, "_constraints", None)
            rec = record_from_row(
                raw,
                row.get("key_value_pairs") or {},
                row.get("data") or {},
                source_id=source_id,
                path=part.path,
                index=index,
                opts=opts,
                unit_dict=unit_dict,
                distance_unit=distance_unit,
            )
        except _ROW_ERRORS as exc:
            yield Rejected(part.path, index, f"bad_value:{exc} (row id {row_id})", opts.dataset, source_id)
            continue
        rec.metadata["row_id"] = row_id
        reason = problem(rec)
        if reason is not None:
            yield Rejected(part.path, index, f"{reason} (row id {row_id})", opts.dataset, source_id)
        else:
            yield rec.normalized()


# what ase.db raises for a damaged row or page: sqlite errors, broken JSON/UTF-8 (ValueError),
# blobs of the wrong size or type (TypeError, KeyError, IndexError, struct/zlib errors)
_ROW_ERRORS = (
    sqlite3.Error,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    struct.error,
    zlib.error,
)


def _rows(db: Any, path: str, lo: int, hi: int) -> Iterator[tuple[int, Any]]:
    """``(row id, row)`` for ids ``lo..hi`` in order, from one ``select``; if it fails part way
    (a damaged page or row), the rest one id at a time, with the error in place of each row
    that cannot be read, so a damaged row costs only itself."""
    last = lo - 1
    try:
        for row in db.select(f"id>={lo},id<={hi}", sort="id"):
            yield int(row.id), row
            last = int(row.id)
        return
    except _ROW_ERRORS:
        pass
    for row_id in _ids_between(Path(path), last + 1, hi):
        try:
            row = db.get(id=row_id)
        except _ROW_ERRORS as exc:
            yield row_id, exc
            continue
        yield row_id, row


def _ids_between(path: Path, lo: int, hi: int) -> list[int]:
    """Row ids ``lo..hi`` from the ``systems`` table (sqlite3 itself, no row decoding)."""
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            return [r[0] for r in con.execute("SELECT id FROM systems WHERE id BETWEEN ? AND ? ORDER BY id", (lo, hi))]
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise ReaderError(f"{path}: ASE database damaged: row ids {lo}..{hi} cannot be listed ({exc})") from exc
