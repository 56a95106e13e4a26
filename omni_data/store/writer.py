"""Atomic shard writes: temp files in the store, fsync, ``os.replace``, then one catalog entry.

A shard's files reach their final names only when complete, and the shard becomes visible to
readers only when its catalog entry lands (``catalog.add_shard``). A crash at any point leaves
either nothing or unreferenced files that the next write of the same shard overwrites.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.processes import pid_alive
from omni_data.record_checks import problem
from omni_data.schema import Record, Rejected
from omni_data.store import catalog as cat

__all__ = [
    "ShardInfo",
    "sha256_file",
    "staging_error",
    "reason_kind",
    "element_counts",
    "write_shard_files",
    "dead_leftovers",
    "clean_leftovers",
    "register_shard",
    "write_shard",
    "sidecar_path",
]

FORMATS = ("lmdb", "columns")
"""A shard is always both files (store format 2): the LMDB records and the Parquet columns."""
SUFFIX = {"lmdb": ".lmdb", "columns": ".parquet"}
LEGACY_FORMATS = ("arrow", "lmdb")
"""What ``formats`` meant in store format 1; accepted (any non-empty subset) and ignored."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class ShardInfo:
    """What ``write_shard`` wrote; ``entry()`` is its catalog row."""

    name: str
    records: int
    atoms: int
    files: dict[str, dict[str, Any]]
    by_task: dict[str, int]
    by_dataset: dict[str, int]
    by_element: dict[str, int]
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    quarantine: dict[str, Any] | None = None
    partition: str | None = None
    partition_hash: str | None = None

    def entry(self) -> dict[str, Any]:
        return asdict(self)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def staging_error(exc: OSError, final: Path) -> OSError:
    """``exc`` (raised writing the temporary file of ``final``) restated for ``final``, the file
    the user knows: ``[Errno 28] STORE/shards/NAME.lmdb: No space left on device``."""
    if exc.errno is None:
        return OSError(f"{final}: {exc}")
    if exc.errno == errno.ENOSPC:
        return OSError(errno.ENOSPC, f"{final}: {os.strerror(errno.ENOSPC)}")
    detail = exc.strerror or str(exc)
    if detail.startswith(f"{final.parent}{os.sep}."):  # "TMP: what": the temp file's name is no help
        detail = detail.split(": ", 1)[-1]
    return OSError(exc.errno, f"{final}: {detail}")


def reason_kind(reason: str) -> str:
    """The stable part of a quarantine reason (before the first colon)."""
    return reason.split(":", 1)[0] or "unknown"


def element_counts(records: Sequence[Record]) -> dict[str, int]:
    """How many records contain each element (vectorised over the shard)."""
    from ase.data import chemical_symbols

    if not records:
        return {}
    lengths = np.array([r.n_atoms for r in records])
    owner = np.repeat(np.arange(len(records), dtype=np.int64), lengths)
    z = np.concatenate([np.asarray(r.numbers, dtype=np.int64) for r in records])
    pairs = np.unique(owner * 256 + z)
    zs, counts = np.unique(pairs % 256, return_counts=True)
    return {chemical_symbols[int(k)]: int(c) for k, c in zip(zs, counts)}


def _check(store_dir: Path, name: str, records: Sequence[Record], validate: bool) -> None:
    for i, record in enumerate(records) if validate else ():
        record.normalized()
        why = problem(record)
        if why is not None:
            raise ValueError(f"{store_dir}: shard {name!r}: record {i} ({record.id!r}) cannot be stored: {why}")
    if len({r.id for r in records}) != len(records):
        seen: set[str] = set()
        dup = next(r.id for r in records if r.id in seen or seen.add(r.id))  # type: ignore[func-returns-value]
        raise ValueError(f"{store_dir}: shard {name!r}: duplicate id {dup!r}")


def _write_quarantine(path: Path, shard: str, rejected: Sequence[Rejected]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "source_file": pa.array([r.source_file for r in rejected], pa.string()),
            "source_index": pa.array([r.source_index for r in rejected], pa.int64()),
            "reason": pa.array([r.reason for r in rejected], pa.string()),
            "kind": pa.array([reason_kind(r.reason) for r in rejected], pa.string()),
            "dataset": pa.array([r.dataset for r in rejected], pa.string()),
            "source_id": pa.array([str(r.source_id) for r in rejected], pa.string()),
            "detail": pa.array([json.dumps(r.detail, sort_keys=True, default=str) for r in rejected], pa.string()),
            "shard": pa.array([shard] * len(rejected), pa.string()),
        }
    )
    pq.write_table(table, str(path))


def write_shard_files(
    store_dir: Path,
    name: str,
    records: Sequence[Record],
    rejected: Iterable[Rejected] = (),
    formats: Sequence[str] = FORMATS,
    partition: str | None = None,
    partition_hash: str | None = None,
    validate: bool = True,
) -> ShardInfo:
    """Write a shard's files atomically (no catalog change); returns the catalog entry to add.

    ``validate=False`` skips ``normalized()``/``problem()`` for callers that already did both
    (the ingest pipeline); duplicate ids are always checked.
    """
    from omni_data.store.arrow import columns_table, write_columns
    from omni_data.store.codec import encode_record
    from omni_data.store.lmdb import HEAD_BYTES
    from omni_data.store.lmdb_write import write_lmdb

    store_dir = Path(store_dir)
    if not _NAME.match(name):
        raise ValueError(f"{store_dir}: bad shard name {name!r} (letters, digits, . _ -)")
    known = set(FORMATS) | set(LEGACY_FORMATS)
    if not formats or set(formats) - known:
        raise ValueError(f"{store_dir}: shard formats must be a non-empty subset of {FORMATS}, got {list(formats)}")
    records = list(records)
    rejected = list(rejected)
    _check(store_dir, name, records, validate)
    shard_dir = store_dir / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    clean_leftovers(store_dir)
    tmp_tag = f".tmp-{os.getpid()}"
    staged: list[tuple[Path, Path]] = []
    files: dict[str, dict[str, Any]] = {}
    final = shard_dir / name
    try:
        for fmt in FORMATS:
            final = shard_dir / f"{name}{SUFFIX[fmt]}"
            tmp = shard_dir / f".{name}{SUFFIX[fmt]}{tmp_tag}"
            if fmt == "columns":
                write_columns(columns_table(records), tmp)
            else:
                strings: dict[str, int] = {}
                values = [encode_record(r, row, strings) for row, r in enumerate(records)]
                write_lmdb(tmp, name, values, list(strings))
            _fsync_file(tmp)
            staged.append((tmp, final))
            data = tmp.read_bytes()
            files[fmt] = {
                "file": str(final.relative_to(store_dir)),
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
            if fmt == "columns":
                files[fmt]["crc32"] = zlib.crc32(data)
            else:
                files[fmt]["head_crc32"] = zlib.crc32(data[:HEAD_BYTES])
        quarantine = None
        if rejected:
            qdir = store_dir / "quarantine"
            qdir.mkdir(parents=True, exist_ok=True)
            final = qdir / f"{name}.parquet"
            tmp = qdir / f".{name}.parquet{tmp_tag}"
            staged.append((tmp, final))
            _write_quarantine(tmp, name, rejected)
            _fsync_file(tmp)
            data = tmp.read_bytes()
            quarantine = {
                "file": str(final.relative_to(store_dir)),
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "crc32": zlib.crc32(data),
                "records": len(rejected),
            }
        for tmp, final in staged:
            os.replace(tmp, final)
    except BaseException as exc:
        for tmp, _final in staged:
            tmp.unlink(missing_ok=True)
        for fmt in FORMATS:
            (shard_dir / f".{name}{SUFFIX[fmt]}{tmp_tag}").unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise staging_error(exc, final) from exc
        raise
    cat.fsync_dir(shard_dir)
    return ShardInfo(
        name=name,
        records=len(records),
        atoms=int(sum(r.n_atoms for r in records)),
        files=files,
        by_task=dict(Counter(r.task for r in records)),
        by_dataset=dict(Counter(r.dataset for r in records)),
        by_element=element_counts(records),
        quarantined=len(rejected),
        quarantined_by_reason=dict(Counter(reason_kind(r.reason) for r in rejected)),
        quarantine=quarantine,
        partition=partition,
        partition_hash=partition_hash,
    )


LEFTOVER_GRACE_S = 3600.0
"""A temporary file is a leftover only when untouched this long (a writer on another node of a
shared filesystem has a pid this host cannot see) and its pid is not running here."""


def dead_leftovers(store_dir: Path, grace_s: float = LEFTOVER_GRACE_S) -> list[Path]:
    """Temporary files (``.<name>.tmp-<pid>``) and id-index build folders (``.build-<pid>``) in
    the store untouched for ``grace_s`` whose writing process is not running on this host."""
    import time

    store_dir = Path(store_dir)
    now = time.time()
    out: list[Path] = []
    for folder in (store_dir, store_dir / "shards", store_dir / "quarantine", store_dir / "index"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if not path.name.startswith("."):
                continue
            tag = cat.TMP_MARK if cat.TMP_MARK in path.name else ".build-" if path.name.startswith(".build-") else None
            if tag is None:
                continue
            pid = path.name.rsplit(tag, 1)[-1]
            try:
                age = now - path.stat().st_mtime
            except OSError:
                continue
            if pid.isdigit() and int(pid) != os.getpid() and age >= grace_s and not pid_alive(int(pid)):
                out.append(path)
    return out


def clean_leftovers(store_dir: Path) -> list[Path]:
    """Remove ``dead_leftovers`` (what a killed writer left); returns what was removed."""
    import shutil

    removed = []
    for path in dead_leftovers(store_dir):
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def register_shard(store_dir: Path, *infos: ShardInfo | dict[str, Any]) -> None:
    """Add written shards (``ShardInfo`` or catalog entry dicts) to the catalog in one locked update."""
    cat.add_shards(Path(store_dir), [i if isinstance(i, dict) else i.entry() for i in infos])


def write_shard(
    store_dir: Path,
    name: str,
    records: Iterable[Record],
    rejected: Iterable[Rejected] = (),
    formats: Sequence[str] = FORMATS,
    partition: str | None = None,
    partition_hash: str | None = None,
) -> ShardInfo:
    """Write one shard atomically and register it in the catalog; returns its ``ShardInfo``."""
    store_dir = Path(store_dir)
    if cat.Catalog(store_dir).shard(name) is not None:
        raise ValueError(f"{store_dir}: shard {name!r} already exists (shards are immutable)")
    info = write_shard_files(store_dir, name, list(records), rejected, formats, partition, partition_hash)
    register_shard(store_dir, info)
    return info


def sidecar_path(store_dir: Path, kind: str, shard: str, suffix: str) -> Path:
    """Where per-shard derived data of ``kind`` goes: ``STORE/sidecars/<kind>/<shard><suffix>``."""
    if not _NAME.match(kind) or not _NAME.match(shard):
        raise ValueError(f"bad sidecar kind/shard name {kind!r}/{shard!r}")
    folder = Path(store_dir) / "sidecars" / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{shard}{suffix if suffix.startswith('.') or not suffix else '.' + suffix}"
