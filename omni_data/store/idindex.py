"""The store's id index: ``store.get(id)`` in one lookup, however many shards the store has.

Each LMDB shard already maps its own ids to rows, but a store of 242M records has ~24,000
shards, and without a store-level index ``get(id)`` would ask every shard of the id's dataset.
The index is made of immutable **segments**, each a single-file LMDB under ``STORE/index/``:

* ``b"__segment__"`` -> msgpack ``{"version": 1, "shards": [names], "ids": count}``;
* ``b"i" + id (UTF-8)`` -> ``>IQ`` (position of the shard in that list, row in the shard).

``catalog.json`` lists the segments in ``sections["id_index"]`` (file, sha256, bytes, shards,
datasets, ids). A segment is written to a temporary file, fsynced, renamed into place and only
then added to the catalog under its lock, like a shard: a crash leaves at most an unreferenced
file. ``build_id_index`` adds one segment covering the shards no segment covers yet (ingest
calls it at the end of a run, ``omni-data index STORE`` by hand); ``rebuild=True`` merges
everything into one segment. Shards not yet covered are still found, by asking each of them.
Building streams every shard's sorted id keys through one k-way merge into an append-only
LMDB write: memory does not grow with the store. A duplicate id across shards is an error
naming both shards.
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from omni_data.store.catalog import Catalog, fsync_dir, update_catalog
from omni_data.store.lmdb import LmdbFile

__all__ = ["IdSegment", "IdIndex", "IdIndexReport", "build_id_index"]

SECTION = "id_index"
FOLDER = "index"
SEGMENT_KEY = b"__segment__"
_SLOT_ROW = struct.Struct(">IQ")


class IdSegment(LmdbFile):
    """One segment file: ``find(id)`` -> (shard name, row) or None."""

    kind = "id index segment"

    def __init__(self, path: Path, shards: list[str], meta: dict[str, Any] | None = None):
        super().__init__(path, meta)
        self.shards = shards

    def find(self, record_id: str) -> tuple[str, int] | None:
        value = self._get(b"i" + record_id.encode("utf-8"))
        if value is None:
            return None
        if len(value) != _SLOT_ROW.size:
            raise ValueError(f"{self.path}: id {record_id!r}: value of {len(value)} bytes (damaged segment)")
        slot, row = _SLOT_ROW.unpack(value)
        if slot >= len(self.shards):
            raise ValueError(
                f"{self.path}: id {record_id!r}: shard slot {slot} of {len(self.shards)} (damaged segment)"
            )
        return self.shards[slot], row

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "shards": self.shards}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.shards = state["shards"]


class IdIndex:
    """The segments a catalog lists, opened lazily; what ``Store.index_of`` asks first."""

    def __init__(self, store_dir: Path, catalog: Catalog, known: Any = None):
        section = catalog.sections.get(SECTION) or {}
        known = {s["name"] for s in catalog.shards} if known is None else set(known)
        self.segments: list[tuple[frozenset[str], IdSegment]] = []
        self.covered: set[str] = set()
        for seg in section.get("segments", []):
            meta = {k: seg[k] for k in ("bytes", "head_crc32") if k in seg}
            self.segments.append(
                (frozenset(seg.get("datasets", [])), IdSegment(Path(store_dir) / seg["file"], seg["shards"], meta))
            )
            self.covered.update(name for name in seg["shards"] if name in known)

    def find(self, record_id: str) -> tuple[str, int] | None:
        dataset = record_id.split(":", 1)[0]
        for datasets, segment in self.segments:
            if datasets and dataset not in datasets:
                continue
            hit = segment.find(record_id)
            if hit is not None:
                return hit
        return None

    def close(self) -> None:
        for _, segment in self.segments:
            segment.close()


@dataclass
class IdIndexReport:
    """What ``build_id_index`` did."""

    store: str
    segment: str | None = None
    shards: int = 0
    ids: int = 0
    seconds: float = 0.0
    removed: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.segment is None:
            return f"{self.store}: id index already covers every shard"
        return f"{self.store}: indexed {self.ids:,} ids of {self.shards} shards into {self.segment} in {self.seconds:.1f} s"


def _shard_ids(store_dir: Path, entry: dict[str, Any]) -> Iterator[tuple[bytes, int]]:
    """(id bytes, row) of one shard in byte order, from its Parquet ``id`` column (checked)."""
    from omni_data.store.arrow import read_columns

    meta = entry["files"]["columns"]
    ids = read_columns(store_dir / meta["file"], meta, ["id"]).column("id").to_pylist()
    yield from sorted((i.encode("utf-8"), row) for row, i in enumerate(ids))


RETIRE_GRACE_S = 24 * 3600.0
"""A segment replaced by ``--rebuild`` is deleted only by a build this long after (seconds)."""

FAN_IN = 128
"""Sorted streams merged at once: each open shard or run holds a file descriptor and a map."""


def _file_stream(path: Path) -> Iterator[tuple[bytes, int, int]]:
    """(id, slot, row) of a temporary run file, in id byte order."""
    run = LmdbFile(path)
    try:
        for key, value in run.scan():
            slot, row = _SLOT_ROW.unpack(value)
            yield key, slot, row
    finally:
        run.close()


def _write_sorted(
    path: Path,
    items: Iterator[tuple[bytes, int, int]],
    total: int,
    names: list[str],
    store_dir: Path,
    key_prefix: bytes,
    bar: Any = None,
    segment: bool = False,
) -> int:
    """Write a merged stream to a new LMDB at ``path`` (append-only); a repeated id is an error.
    ``segment``: also write the ``__segment__`` header in the same transaction. A failed write
    raises ``OSError`` naming ``path`` (ENOSPC for a full disk: ``lmdb_write.write_error``)."""
    import lmdb

    from omni_data.store.lmdb_write import write_error

    try:
        return _write_sorted_lmdb(path, items, total, names, store_dir, key_prefix, bar, segment)
    except lmdb.Error as exc:
        raise write_error(exc, Path(path), total * _ID_BYTES) from exc


_ID_BYTES = 48 + 12
"""Bytes one id takes in a segment, about (a typical id, the slot and row, the node header)."""


def _write_sorted_lmdb(
    path: Path,
    items: Iterator[tuple[bytes, int, int]],
    total: int,
    names: list[str],
    store_dir: Path,
    key_prefix: bytes,
    bar: Any,
    segment: bool,
) -> int:
    """The body of ``_write_sorted``."""
    import lmdb

    map_size = max(1 << 20, 4 * total * _ID_BYTES + (1 << 20))  # generous, sparse on disk
    env = lmdb.open(
        str(path), map_size=map_size, subdir=False, lock=False, sync=True, metasync=True, readahead=False, meminit=True
    )
    count = 0
    try:
        with env.begin(write=True) as txn:
            prev, prev_slot = None, -1
            for key, slot, row in items:
                if key == prev:
                    raise ValueError(
                        f"{store_dir}: id {key.decode('utf-8', 'replace')!r} is in shards "
                        f"{names[prev_slot]!r} and {names[slot]!r}; ids must be unique in a store"
                    )
                txn.put(key_prefix + key, _SLOT_ROW.pack(slot, row), append=True)
                prev, prev_slot = key, slot
                count += 1
                if bar is not None and count % 65536 == 0:
                    bar.update(65536)
            if bar is not None:
                bar.update(count % 65536)
            if segment:
                txn.put(SEGMENT_KEY, msgpack.packb({"version": 1, "shards": names, "ids": count}))
        env.sync(True)
    finally:
        env.close()
    return count


def _slotted(ids: Iterator[tuple[bytes, int]], slot: int) -> Iterator[tuple[bytes, int, int]]:
    for key, row in ids:
        yield key, slot, row


def _merged(
    store_dir: Path, entries: list[dict[str, Any]], scratch: Path, total: int, names: list[str]
) -> Iterator[tuple[bytes, int, int]]:
    """(id, slot, row) over ``entries`` in id byte order: a k-way merge of the shards' sorted
    id keys, through temporary sorted runs in ``scratch`` when there are more than ``FAN_IN``."""
    sources: list[Any] = [_slotted(_shard_ids(store_dir, e), slot) for slot, e in enumerate(entries)]
    # A generator opens its file only when first advanced, so runs of FAN_IN are built one by one.
    level = 0
    while len(sources) > FAN_IN:
        runs = []
        for k in range(0, len(sources), FAN_IN):
            path = scratch / f"run-{level}-{k // FAN_IN}.lmdb"
            _write_sorted(path, heapq.merge(*sources[k : k + FAN_IN]), total, names, store_dir, b"")
            runs.append(path)
        sources = [_file_stream(path) for path in runs]
        level += 1
    return heapq.merge(*sources)


def build_id_index(store_dir: str | Path, rebuild: bool = False, progress: bool = False) -> IdIndexReport:
    """Index the ids of every shard no segment covers (all shards with ``rebuild``)."""
    from tqdm import tqdm

    store_dir = Path(store_dir)
    t0 = time.perf_counter()
    catalog = Catalog(store_dir)
    report = IdIndexReport(store=str(store_dir))
    section = catalog.sections.get(SECTION) or {}
    old_files = [seg["file"] for seg in section.get("segments", [])]
    covered = set() if rebuild else {name for seg in section.get("segments", []) for name in seg["shards"]}
    entries = [e for e in catalog.shards if e["name"] not in covered]
    if not entries:
        return report
    total = sum(int(e["records"]) for e in entries)
    folder = store_dir / FOLDER
    folder.mkdir(exist_ok=True)
    names = [e["name"] for e in entries]
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    final = folder / f"ids-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{digest}-{os.urandom(4).hex()}.lmdb"
    tmp = folder / f".{final.name}.tmp-{os.getpid()}"
    scratch = folder / f".build-{os.getpid()}"
    scratch.mkdir(exist_ok=True)
    bar = tqdm(total=total, unit="id", disable=not progress, desc=f"id index {store_dir.name}")
    try:
        count = _write_sorted(
            tmp, _merged(store_dir, entries, scratch, total, names), total, names, store_dir, b"i", bar, segment=True
        )
        if count != total:
            raise ValueError(f"{store_dir}: the shards hold {count} ids but the catalog counts {total} records")
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise _no_space(final, total, store_dir) from exc
        raise
    finally:
        bar.close()
        for leftover in scratch.glob("*"):
            leftover.unlink()
        scratch.rmdir()
    try:
        return _register(store_dir, folder, tmp, final, entries, count, rebuild, old_files, report, t0)
    except BaseException:  # e.g. no room to rewrite catalog.json: nothing of this build stays behind
        tmp.unlink(missing_ok=True)
        if not _listed(store_dir, f"{FOLDER}/{final.name}"):
            final.unlink(missing_ok=True)
        raise


def _listed(store_dir: Path, rel: str) -> bool:
    """Whether the catalog lists the segment file ``rel`` (True when it cannot be read: keep the file)."""
    try:
        segments = (Catalog(store_dir).sections.get(SECTION) or {}).get("segments", [])
    except (OSError, ValueError):
        return True
    return any(seg.get("file") == rel for seg in segments)


def _no_space(final: Path, total: int, store_dir: Path) -> OSError:
    """The one-line error of an id index build that ran out of disk space."""
    return OSError(
        errno.ENOSPC,
        f"{final}: {os.strerror(errno.ENOSPC)} (id index of {total:,} ids; the "
        f"shards are intact: free space, then run `omni-data index {store_dir}`)",
    )


def _register(
    store_dir: Path,
    folder: Path,
    tmp: Path,
    final: Path,
    entries: list[dict[str, Any]],
    count: int,
    rebuild: bool,
    old_files: list[str],
    report: IdIndexReport,
    t0: float,
) -> IdIndexReport:
    """Move the written segment into place and list it in the catalog (dropping replaced ones)."""
    from omni_data.store.writer import sha256_file

    names = [e["name"] for e in entries]
    os.replace(tmp, final)
    fsync_dir(folder)
    datasets = sorted({d for e in entries for d in (e.get("by_dataset") or {})})
    from omni_data.store.lmdb import head_crc32

    segment = {
        "file": f"{FOLDER}/{final.name}",
        "sha256": sha256_file(final),
        "bytes": final.stat().st_size,
        "head_crc32": head_crc32(final),
        "shards": names,
        "datasets": datasets,
        "ids": count,
    }
    now = time.time()
    expired: list[str] = []

    def change(data: dict[str, Any]) -> None:
        current = data.setdefault("sections", {}).get(SECTION) or {"version": 1, "segments": []}
        retired = list(current.get("retired", []))
        expired.clear()
        expired.extend(r["file"] for r in retired if now - r["since"] >= RETIRE_GRACE_S)
        retired = [r for r in retired if r["file"] not in expired]
        if rebuild:
            retired += [
                {"file": seg["file"], "since": now} for seg in current["segments"] if seg["file"] != segment["file"]
            ]
            current = {"version": 1, "segments": [segment]}
        else:
            taken = {name for seg in current["segments"] for name in seg["shards"]}
            if taken & set(names):  # another build indexed some of these meanwhile: keep its segment
                raise _Overlap()
            current["segments"].append(segment)
        if retired:
            current["retired"] = retired
        else:
            current.pop("retired", None)
        data["sections"][SECTION] = current

    try:
        update_catalog(store_dir, change)
    except _Overlap:
        final.unlink(missing_ok=True)
        return report
    # Replaced segments are not deleted now: a Store opened before this build may open them
    # later (lazily, or in a DataLoader worker). They are listed under "retired" and deleted
    # by a build at least RETIRE_GRACE_S later; a reader that still finds one missing reloads
    # the catalog's segments (Store.index_of).
    for rel in expired:
        (store_dir / rel).unlink(missing_ok=True)
        report.removed.append(rel)
    report.segment, report.shards, report.ids = str(segment["file"]), len(names), count
    report.seconds = time.perf_counter() - t0
    return report


class _Overlap(Exception):
    """A concurrent build registered a segment for some of the same shards first."""
