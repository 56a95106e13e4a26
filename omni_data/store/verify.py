"""Check a store against its catalog: every file present, sha256 and record counts as recorded.

Each problem names the shard and file and says exactly what differs. Files on disk that no
catalog entry references (left by an interrupted write) are reported as notes, not problems:
readers never see them and the next write of that shard replaces them. Temporary files
(``.catalog.json.tmp-PID``, ``shards/.NAME.lmdb.tmp-PID``, ``index/.build-PID``, ...) that a
killed or failed writer left anywhere in the store are each listed in ``temporaries`` and as a
note saying whether the process that wrote it still runs (if not, it is safe to delete).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from omni_data.processes import pid_alive
from omni_data.store.catalog import Catalog, summarize
from omni_data.store.writer import sha256_file

__all__ = ["VerifyReport", "leftover_temporaries", "verify_store"]


@dataclass
class VerifyReport:
    """``problems`` make a store invalid; ``notes`` are harmless leftovers."""

    store: str
    shards: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    temporaries: list[str] = field(default_factory=list)  # store-relative paths of leftover temp files

    @property
    def ok(self) -> bool:
        return not self.problems


# The temporary names Omni's writers use: .NAME.tmp-PID[.ext], .tmp-PID-NAME, .NAME.PID.tmp[.ext],
# and the id index's scratch folder .build-PID.
_TEMP_NAME = re.compile(
    r"^\.(?:.+\.tmp-(?P<a>\d+)(?:\..*)?|tmp-(?P<b>\d+)-.+|.+\.(?P<c>\d+)\.tmp(?:\..*)?"
    r"|build-(?P<d>\d+))$"
)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def leftover_temporaries(root: Path) -> list[tuple[Path, int]]:
    """(path, writer pid) of every temporary file or folder a store writer left under ``root``
    (the catalog's ``.catalog.json.tmp-PID``, shard, quarantine, index and sidecar temporaries,
    half-extracted archives in ``.sources/SOURCE/``; extracted source trees are not entered)."""
    found = []
    extracted = root / ".sources"
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            match = _TEMP_NAME.match(name)
            if match is not None:
                found.append((Path(folder) / name, int(next(g for g in match.groups() if g is not None))))
        if Path(folder).parent == extracted:  # .sources/SOURCE/: its entries are whole extracted trees
            dirs[:] = []
        dirs[:] = sorted(d for d in dirs if not _TEMP_NAME.match(d))  # a temp folder is listed, not entered
    return sorted(found)


def _note_temporaries(root: Path, report: VerifyReport) -> None:
    for path, pid in leftover_temporaries(root):
        rel = str(path.relative_to(root))
        try:
            size = _size(path)
        except OSError:  # removed meanwhile: its writer finished
            continue
        state = (
            f"its writer (pid {pid}) is still running"
            if pid_alive(pid)
            else f"pid {pid} is not running: safe to delete"
        )
        report.temporaries.append(rel)
        report.notes.append(f"{rel}: temporary file of an interrupted or failed write, {size:,} bytes ({state})")


def _count_rows(fmt: str, path: Path) -> int:
    if fmt == "columns":
        from omni_data.store.arrow import read_columns

        return read_columns(path, None).num_rows
    if fmt == "lmdb":
        from omni_data.store.lmdb import LmdbShard

        shard = LmdbShard(path)
        try:
            problems = shard.check_values()
            if problems:
                raise ValueError(
                    "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
                )
            return shard.n
        finally:
            shard.close()
    if fmt == "quarantine":
        import pyarrow.parquet as pq

        return pq.ParquetFile(str(path)).metadata.num_rows
    if fmt == "id_index":
        import msgpack

        from omni_data.store.idindex import SEGMENT_KEY, IdSegment

        segment = IdSegment(path, [])
        try:
            head = segment._get(SEGMENT_KEY)
            if head is None:
                raise ValueError(f"no {SEGMENT_KEY!r} key: not an id index segment")
            return int(msgpack.unpackb(head)["ids"])
        finally:
            segment.close()
    raise ValueError(f"unknown format {fmt!r}")


def _check_file(root: Path, shard: str, fmt: str, meta: dict, expect_rows: int, report: VerifyReport) -> None:
    path = root / meta["file"]
    report.files += 1
    where = f"shard {shard!r} {fmt} file {meta['file']}"
    if not path.is_file():
        report.problems.append(f"{where}: missing")
        return
    size = path.stat().st_size
    if size != meta["bytes"]:
        report.problems.append(f"{where}: {size} bytes, catalog says {meta['bytes']}")
    digest = sha256_file(path)
    if digest != meta["sha256"]:
        report.problems.append(f"{where}: sha256 {digest[:16]}..., catalog says {meta['sha256'][:16]}...")
        return
    try:
        rows = _count_rows(fmt, path)
    except Exception as exc:  # a corrupt file: say so, keep checking the rest
        report.problems.append(f"{where}: cannot be read ({type(exc).__name__}: {exc})")
        return
    if rows != expect_rows:
        report.problems.append(f"{where}: {rows} records, catalog says {expect_rows}")


def verify_store(store_dir: Path) -> VerifyReport:
    """Recompute checksums and record counts of every catalogued file; see ``VerifyReport``."""
    root = Path(store_dir)
    report = VerifyReport(store=str(root))
    if not (root / "catalog.json").is_file():
        report.problems.append(f"{root}: no catalog.json (not a store)")
        return report
    try:
        catalog = Catalog(root)
    except ValueError as exc:
        report.problems.append(str(exc))
        return report
    referenced: set[Path] = set()
    for entry in catalog.shards:
        report.shards += 1
        for fmt, meta in entry["files"].items():
            referenced.add((root / meta["file"]).resolve())
            _check_file(root, entry["name"], fmt, meta, entry["records"], report)
        if "lmdb" not in entry["files"] or "columns" not in entry["files"]:
            report.problems.append(
                f"shard {entry['name']!r}: the catalog lists {sorted(entry['files'])}, "
                "store format 2 needs lmdb and columns"
            )
        if entry.get("quarantine"):
            meta = entry["quarantine"]
            referenced.add((root / meta["file"]).resolve())
            _check_file(root, entry["name"], "quarantine", meta, entry["quarantined"], report)
    known = {entry["name"]: entry for entry in catalog.shards}
    section = catalog.sections.get("id_index") or {}
    for old in section.get("retired", []):
        referenced.add((root / old["file"]).resolve())
        if (root / old["file"]).exists():
            report.notes.append(
                f"{old['file']}: id index segment retired by a rebuild, kept for open readers "
                "(the next `omni-data index` at least a day later deletes it)"
            )
    for seg in section.get("segments", []):
        referenced.add((root / seg["file"]).resolve())
        _check_file(root, "id index", "id_index", seg, int(seg["ids"]), report)
        missing = [name for name in seg["shards"] if name not in known]
        if missing:
            report.problems.append(f"id index segment {seg['file']}: covers shards not in the catalog: {missing[:3]}")
        elif sum(int(known[name]["records"]) for name in seg["shards"]) != int(seg["ids"]):
            report.problems.append(
                f"id index segment {seg['file']}: {seg['ids']} ids, its shards hold "
                f"{sum(int(known[n]['records']) for n in seg['shards'])} records"
            )
    if summarize(catalog.shards) != catalog.counts:
        report.problems.append("catalog counts differ from the sum of its shard entries")
    for folder in ("shards", "quarantine", "index"):
        for path in sorted((root / folder).glob("*")) if (root / folder).is_dir() else []:
            if path.resolve() not in referenced and not _TEMP_NAME.match(path.name):
                report.notes.append(f"{path.relative_to(root)}: not in the catalog (leftover of an interrupted write)")
    _note_temporaries(root, report)
    return report
