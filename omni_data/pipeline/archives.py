"""Ingest straight from downloaded archives: extract them safely into the store's staging area.

Releases ship as ``.tar.gz``/``.zip`` (OMat24, sAlex, OC20). ``stage_source`` extracts each
archive once, through ``safeio.safe_extract`` (no link members, no path leaving the target),
into ``STORE/.sources/<archive>/`` via a temporary folder and a rename, so a crash mid-extraction
leaves nothing half-extracted that a re-run would trust. Folder names come from ``safe_name``, so
an archive called ``...tar`` cannot name a folder above ``.sources``; a refused archive leaves no
temporary folder behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from omni_data.readers import ReaderError, find_sources
from omni_data.safeio import safe_extract, safe_name

__all__ = ["is_archive", "stage_source"]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")
DONE_MARK = ".omni-extracted"


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _stem(path: Path) -> str:
    """The archive's name without its suffix, made safe as one folder name (never ``.``/``..``)."""
    name = path.name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return safe_name(name)


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
        _extract_once(archive, root)
    return root


def _extract_once(archive: Path, root: Path) -> None:
    """Extract ``archive`` into ``root/<stem>`` unless done; on any error remove what was started."""
    dest = root / _stem(archive)
    if (dest / DONE_MARK).is_file():
        return
    tmp = root / f".{_stem(archive)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        safe_extract(archive, tmp)
        (tmp / DONE_MARK).write_text(f"{archive.resolve()}\n{archive.stat().st_size}\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in (root, root.parent):  # only if now empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
