"""Ingest straight from downloaded archives: extract them safely into the store's staging area.

Releases ship as ``.tar.gz``/``.zip`` (OMat24, sAlex, OC20). ``stage_source`` extracts each
archive once, through ``safeio.safe_extract`` (no path or link may leave the target), into
``STORE/.sources/<archive>/`` via a temporary folder and a rename, so a crash mid-extraction
leaves nothing half-extracted that a re-run would trust.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from omni_data.readers import ReaderError, find_sources
from omni_data.safeio import safe_extract

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")
DONE_MARK = ".omni-extracted"


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _has_sources(folder: Path, reader: str, globs: tuple[str, ...] | None) -> bool:
    try:
        return bool(find_sources(folder, reader, globs))
    except ReaderError:
        return False


def stage_source(source: Path, store: Path, reader: str, globs: tuple[str, ...] | None = None) -> Path:
    """The folder to ingest from: ``source`` itself, or where its archive(s) were extracted.

    A folder is staged only when it holds archives and no readable source files, so an extracted
    tree with its tarballs beside it is never read twice.
    """
    source = Path(source)
    if is_archive(source):
        archives = [source]
    elif source.is_dir() and not _has_sources(source, reader, globs):
        archives = sorted(p for p in source.iterdir() if is_archive(p))
    else:
        return source
    if not archives:
        return source
    root = Path(store) / ".sources" / _stem(source)
    root.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        dest = root / _stem(archive)
        if (dest / DONE_MARK).is_file():
            continue
        tmp = root / f".{_stem(archive)}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        safe_extract(archive, tmp)
        (tmp / DONE_MARK).write_text(f"{archive.resolve()}\n{archive.stat().st_size}\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return root
