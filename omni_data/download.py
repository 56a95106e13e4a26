"""Fetch a manifest's files over HTTP(S) with resume and sha256 check.

A partial download lives at ``<name>.part`` and is resumed with an HTTP ``Range`` request; the
file only takes its final name after its size and sha256 (where the manifest knows them) match.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from omni_data.manifest import Manifest, SourceFile

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file that could not be fetched or failed its check; the message names file and URL."""


@dataclass
class Fetched:
    name: str
    path: Path
    bytes: int
    sha256: str
    resumed_from: int
    skipped: bool


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(entry: SourceFile, path: Path) -> str:
    size = path.stat().st_size
    if entry.size_bytes is not None and size != entry.size_bytes:
        raise DownloadError(f"{path}: size {size} does not match the manifest's {entry.size_bytes} ({entry.url})")
    digest = sha256_of(path)
    if entry.sha256 and digest != entry.sha256.lower():
        raise DownloadError(f"{path}: sha256 {digest} does not match the manifest's {entry.sha256} ({entry.url})")
    return digest


def fetch_file(
    entry: SourceFile, dest_dir: Path, progress: Callable[[int], None] | None = None, timeout: float = 60.0
) -> Fetched:
    """Download one file into ``dest_dir``, resuming a ``.part`` file; verify size and sha256."""
    if not entry.url:
        raise DownloadError(f"{entry.name}: the manifest gives no URL; fetch it by hand into {dest_dir}")
    target = dest_dir / entry.name
    if target.is_file():
        return Fetched(entry.name, target, target.stat().st_size, _check(entry, target), 0, True)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(entry.url)
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = getattr(response, "status", 200)
            if start and status != 206:
                start = 0  # server ignored the range: start again
            with open(part, "ab" if start else "wb") as out:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    if progress:
                        progress(len(block))
                out.flush()
                os.fsync(out.fileno())
    except OSError as exc:
        raise DownloadError(f"{entry.name}: download from {entry.url} failed after {part.stat().st_size if part.exists() else 0} bytes ({exc}); run again to resume") from exc
    digest = _check(entry, part)
    os.replace(part, target)
    return Fetched(entry.name, target, target.stat().st_size, digest, start, False)


def fetch_manifest(manifest: Manifest, dest_dir: Path, progress: Callable[[int], None] | None = None) -> list[Fetched]:
    """Fetch every file a manifest lists; raises on the first failure, keeping partial files."""
    if not manifest.files:
        raise DownloadError(f"{manifest.path}: manifest {manifest.name!r} lists no files; see {manifest.url or 'its citation'}")
    return [fetch_file(entry, Path(dest_dir), progress) for entry in manifest.files]
