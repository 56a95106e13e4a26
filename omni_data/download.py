"""Fetch a manifest's release files over HTTP(S): resume, size and md5/sha256 check.

A partial download lives at ``<name>.part`` and is resumed with an HTTP ``Range`` request; the
file only takes its final name after its size and checksum (md5 or sha256, whichever the
manifest gives; both when it gives both) match; a file with only the publisher's rounded size must
be within a factor of two of it (``APPROX_FACTOR``). A file whose checksum does not match is removed
and named in one line. ``--split`` / ``--subset`` pick files through ``Manifest.select_files``.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from omni_data.manifest import Manifest, SourceFile
from omni_data.release_listing import release_files

__all__ = [
    "DownloadError",
    "Fetched",
    "SizeTotal",
    "size_total",
    "size_cell",
    "default_folder",
    "plan",
    "describe_plan",
    "digest_of",
    "fetch_file",
    "fetch_manifest",
    "human_bytes",
    "where_to_put",
]

CHUNK = 1 << 20
APPROX_FACTOR = 2
"""A file with only a rounded size (``size_approx``) is refused when it is under 1/2 or over 2 times it:
rounded sizes are good to a few per cent (and GB vs GiB to 7 %), an error page or a truncated file is not."""
Progress = Callable[[int], None]


class DownloadError(RuntimeError):
    """A file that could not be fetched or failed its check; the message names the file and URL."""


@dataclass
class Fetched:
    """One file on disk after ``fetch_file``: its checksum (``algorithm``: md5 or sha256) and how."""

    name: str
    path: Path
    bytes: int
    digest: str
    algorithm: str
    resumed_from: int
    skipped: bool

    @property
    def sha256(self) -> str:
        """The sha256 when that is what was checked (kept for callers of the first API)."""
        return self.digest if self.algorithm == "sha256" else ""


def human_bytes(n: int | None) -> str:
    """``1.5 GB`` (powers of 1000, as publishers list sizes); ``size unknown`` for None."""
    if n is None:
        return "size unknown"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


@dataclass(frozen=True)
class SizeTotal:
    """The summed size of some release files: exact sizes plus the publishers' rounded ones."""

    bytes: int  # exact + rounded sizes
    files: int
    exact: int  # files with size_bytes
    approx: int  # files with only size_approx
    unknown: int  # files with neither

    def describe(self) -> str:
        """``1.5 GB``; ``~38.6 GB (2 sizes approximate)``; ``... (+ 1 file of unknown size)``."""
        notes = []
        if self.approx:
            notes.append(f"{self.approx} size{'s' if self.approx != 1 else ''} approximate")
        if self.unknown:
            notes.append(f"+ {self.unknown} file{'s' if self.unknown != 1 else ''} of unknown size")
        tail = f" ({', '.join(notes)})" if notes else ""
        return f"{'~' if self.approx else ''}{human_bytes(self.bytes)}{tail}"


def size_total(files: list[SourceFile] | tuple[SourceFile, ...]) -> SizeTotal:
    """Sum the exact (``size_bytes``) and, where only that is given, the rounded (``size_approx``) sizes."""
    exact = [f.size_bytes for f in files if f.size_bytes is not None]
    approx = [n for f in files if f.size_bytes is None and (n := f.approx_bytes) is not None]
    return SizeTotal(
        bytes=sum(exact) + sum(approx),
        files=len(files),
        exact=len(exact),
        approx=len(approx),
        unknown=len(files) - len(exact) - len(approx),
    )


def size_cell(entry: SourceFile) -> str:
    """One file's size: exact (``1.5 GB``), the publisher's rounded one (``~21 GB``) or ``size unknown``."""
    if entry.size_bytes is None and entry.size_approx:
        return f"~{entry.size_approx}"
    return human_bytes(entry.size_bytes)


def digest_of(path: Path, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digests of ``path`` for each of ``algorithms`` (md5, sha256), in one read."""
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            for d in digests.values():
                d.update(block)
    return {name: d.hexdigest() for name, d in digests.items()}


def _expected(entry: SourceFile) -> dict[str, str]:
    """The checksums the manifest gives for ``entry`` (lower-case hex), md5 and/or sha256."""
    return {name: value.lower() for name, value in (("md5", entry.md5), ("sha256", entry.sha256)) if value}


def _check(entry: SourceFile, path: Path, name: str) -> tuple[str, str]:
    """(algorithm, digest) of ``path`` after checking its size and checksums; DownloadError on a mismatch."""
    size = path.stat().st_size
    if entry.size_bytes is not None and size != entry.size_bytes:
        raise DownloadError(f"{name}: size {size} B does not match the manifest's {entry.size_bytes} B ({entry.url})")
    approx = entry.approx_bytes if entry.size_bytes is None else None
    if approx and not approx / APPROX_FACTOR <= size <= approx * APPROX_FACTOR:
        raise DownloadError(
            f"{name}: size {human_bytes(size)} is not within a factor of {APPROX_FACTOR} of the publisher's "
            f"~{entry.size_approx}: not the release file (an error page, a moved link?) ({entry.url})"
        )
    wanted = _expected(entry)
    got = digest_of(path, tuple(wanted) or ("sha256",))
    for algorithm, value in wanted.items():
        if got[algorithm] != value:
            raise DownloadError(
                f"{name}: {algorithm} {got[algorithm]} does not match the manifest's {value} ({entry.url})"
            )
    algorithm = "sha256" if "sha256" in got else "md5"
    return algorithm, got[algorithm]


def _target(entry: SourceFile, dest_dir: Path) -> Path:
    """Where ``entry`` goes under ``dest_dir``; a name that would leave it (absolute, ``..``) is refused."""
    name = PurePosixPath(entry.name)
    if name.is_absolute() or ".." in name.parts or not name.parts:
        raise DownloadError(f"{entry.name}: a release file name must be a relative path inside the download folder")
    return Path(dest_dir, *name.parts)


def fetch_file(entry: SourceFile, dest_dir: Path, progress: Progress | None = None, timeout: float = 60.0) -> Fetched:
    """Download one file into ``dest_dir``, resuming a ``.part`` file; verify size and md5/sha256.

    ``progress(n)`` is told of every ``n`` bytes on disk, including those already there."""
    if not entry.url:
        raise DownloadError(f"{entry.name}: the manifest gives no URL; fetch it by hand into {dest_dir}")
    target = _target(entry, Path(dest_dir))
    if target.is_file():
        algorithm, digest = _check(entry, target, str(target))
        if progress:
            progress(target.stat().st_size)
        return Fetched(entry.name, target, target.stat().st_size, digest, algorithm, 0, True)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    start = _download(entry, part, progress, timeout)
    try:
        algorithm, digest = _check(entry, part, entry.name)
    except DownloadError as exc:
        part.unlink()
        raise DownloadError(f"{exc}; removed the bad download, run again to fetch it afresh") from None
    os.replace(part, target)
    return Fetched(entry.name, target, target.stat().st_size, digest, algorithm, start, False)


def _download(entry: SourceFile, part: Path, progress: Progress | None, timeout: float) -> int:
    """Append the rest of ``entry`` to ``part`` (a Range request when some is there); the offset resumed from."""
    start = part.stat().st_size if part.exists() else 0
    if start and entry.size_bytes is not None and start >= entry.size_bytes:
        return start  # all there: an interrupted run stopped between download and check
    if progress and start:
        progress(start)
    request = urllib.request.Request(entry.url, headers={"User-Agent": "omni-data"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if start and getattr(response, "status", 200) != 206:
                if progress:
                    progress(-start)
                start = 0  # the server ignored the range: start again
            with open(part, "ab" if start else "wb") as out:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    if progress:
                        progress(len(block))
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to send: the part is complete
            return start
        raise DownloadError(f"{entry.name}: download from {entry.url} failed: HTTP {exc.code} {exc.reason}") from exc
    except OSError as exc:
        have = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"{entry.name}: download from {entry.url} failed after {have} bytes ({exc}); run again to resume"
        ) from exc
    return start


def fetch_manifest(
    manifest: Manifest,
    dest_dir: Path,
    progress: Progress | None = None,
    splits: tuple[str, ...] = (),
    subsets: tuple[str, ...] = (),
    files: list[SourceFile] | None = None,
) -> list[Fetched]:
    """Fetch the release files of ``splits``/``subsets`` (all when empty); stops at the first
    failure, keeping finished and partial files so a re-run resumes.

    ``files``: the release files to pick from (``release_listing.release_files``); by default they
    are resolved here: the manifest's own, or its publisher's list pinned in ``dest_dir``."""
    if files is None:
        files, _ = release_files(manifest, Path(dest_dir))
    return [fetch_file(entry, Path(dest_dir), progress) for entry in plan(manifest, splits, subsets, files)]


def plan(
    manifest: Manifest,
    splits: tuple[str, ...] = (),
    subsets: tuple[str, ...] = (),
    files: list[SourceFile] | None = None,
) -> list[SourceFile]:
    """The files (``files``, default the manifest's own) a download would fetch; DownloadError when
    there are none to fetch."""
    files = list(manifest.files) if files is None else files
    if not files:
        raise DownloadError(
            f"{manifest.path}: manifest {manifest.name!r} lists no release files; "
            f"fetch them from {manifest.url or 'the publisher (see its citation)'}"
        )
    return manifest.select_files(tuple(splits), tuple(subsets), files)


def describe_plan(files: list[SourceFile], dest_dir: Path | None = None) -> list[str]:
    """One aligned line per file (name, split, subset, size, checksum, URL, present) and a total line."""
    rows = []
    for f in files:
        check = "+".join(a for a, v in (("md5", f.md5), ("sha256", f.sha256)) if v) or "no checksum"
        present = "present" if dest_dir is not None and _target(f, dest_dir).is_file() else ""
        rows.append(
            [
                f.name,
                f.split,
                f.subset or "-",
                size_cell(f),
                check,
                f.url or "NO URL: fetch by hand",
                present,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(6)] if rows else []
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + (f"  ({r[6]})" if r[6] else "") for r in rows]
    lines.append(f"total: {len(files)} file{'s' if len(files) != 1 else ''}, {size_total(files).describe()}")
    return lines


def default_folder(manifest: Manifest) -> str:
    """Where a dataset's release files are looked for without ``--source``: ``$OMNI_DATA_ROOT/NAME``
    when that is set (``omni_data.sources``), else ``./NAME`` as a suggestion."""
    root = os.environ.get("OMNI_DATA_ROOT")
    return str(Path(root) / manifest.name) if root else f"./{manifest.name}"


def where_to_put(manifest: Manifest) -> str:
    """The one-line hint for ``omni-data ingest NAME`` with no local copy: where to put the files
    and the ``download`` command that fetches them (or the page to fetch them from)."""
    name, folder = manifest.name, default_folder(manifest)
    then = f"then `omni-data ingest {name} --source {folder}`"
    if manifest.listing is not None or any(f.url for f in manifest.files):
        return (
            f"no local copy of {name}: put the release files under {folder} or run "
            f"`omni-data download {name} --out {folder}`, {then}"
        )
    page = manifest.url or "the publisher's page (see the manifest's citation)"
    return f"no local copy of {name}: fetch its release files from {page} into {folder}, {then}"
