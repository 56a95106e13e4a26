"""Safe handling of untrusted inputs: restricted unpickling, archive extraction, safe names.

Why: source databases (OC20/OC22/ODAC LMDBs, matsciml dev sets) ship *pickles*, and plain
``pickle.loads`` runs whatever callable the pickle names. ``restricted_loads`` builds only the
objects in an explicit allow-list (plain containers, numpy arrays, and whatever safe stand-ins a
caller adds, e.g. torch tensors rebuilt as numpy in ``readers/_pickle_tensors.py``); any other
global is refused *before* it is called, and every size a pickle asks for is capped against its
own length (``_pickle_guard``). Archives (tar/zip) may hold links whose chains lead outside the
extraction folder; ``safe_extract`` refuses every link member and writes nothing through a link.
``safe_name`` turns any source id into a string usable as a file name and inside a shell script.
"""

from __future__ import annotations

import _compat_pickle
import collections
import hashlib
import io
import os
import pickle
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omni_data import _pickle_guard as _guard
from omni_data._pickle_guard import PickleLimits, UnsafePickleError

__all__ = [
    "UnsafePickleError",
    "ArchiveError",
    "UnsafeArchiveError",
    "PickleLimits",
    "BASIC_GLOBALS",
    "NUMPY_GLOBALS",
    "RestrictedUnpickler",
    "restricted_loads",
    "safe_extract",
    "safe_name",
]


class ArchiveError(ValueError):
    """An archive cannot be read (damaged, truncated, encrypted): names the archive."""


class UnsafeArchiveError(ArchiveError):
    """An archive member is a link, a device or fifo, or would be written outside the target folder."""


# --------------------------------------------------------------------------- allow-listed globals
def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it to carry ``bytes`` (latin1 only)."""
    if encoding != "latin1" or not isinstance(text, str):
        raise UnsafePickleError(f"_codecs.encode only allowed as encode(str, 'latin1'), got {encoding!r}")
    return text.encode("latin1")


BASIC_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): _guard.checked_bytearray,
    ("builtins", "bytes"): _guard.checked_bytes,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _latin1_encode,
}
"""Globals that build plain data and nothing else (``bytes(n)``/``bytearray(n)`` charged to the load's budget)."""

NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _guard.NDARRAY,
    ("numpy", "dtype"): _guard.DtypeSpec,
}
for _core in ("numpy.core", "numpy._core"):
    NUMPY_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _guard.reconstruct
    NUMPY_GLOBALS[(f"{_core}.multiarray", "scalar")] = _guard.scalar
    NUMPY_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _guard.frombuffer
"""numpy's own reconstruction helpers: dtypes and arrays built from checked states, object dtypes
refused, every array charged to the load's budget."""


def _source_length(file: Any) -> int | None:
    """The byte length of an in-memory or on-disk pickle stream, if it can be known."""
    if isinstance(file, io.BytesIO):
        with file.getbuffer() as view:
            return view.nbytes
    try:
        return os.fstat(file.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves globals only through ``allowed`` (module, name) -> callable.

    ``what`` names the source (file and key) in every error. Persistent ids are refused unless a
    ``persistent_load`` callable is given (torch's legacy stream uses them for storages). Every
    size the pickle asks an allowed callable for is charged against ``limits`` for the stream's
    length (``source_len``, else the BytesIO's or file's size); a load nested inside another
    (a torch storage payload) shares the outer load's budget.
    """

    def __init__(
        self,
        file: io.BufferedIOBase | io.BytesIO,
        allowed: Mapping[tuple[str, str], Any],
        what: str,
        persistent_load: Callable[[Any], Any] | None = None,
        *,
        limits: PickleLimits | None = None,
        source_len: int | None = None,
    ) -> None:
        super().__init__(file)
        self._allowed = allowed
        self._what = what
        self._persistent = persistent_load
        self._limits = limits
        self._source_len = source_len if source_len is not None else _source_length(file)

    def load(self) -> Any:
        """Unpickle one object within the allocation budget; stand-ins swapped for real values."""
        budget = _guard.CURRENT.get()
        if budget is not None:
            obj = super().load()
            return _guard.finalize(obj, self._what) if budget.pending else obj
        budget = _guard.Budget(self._what, self._limits or _guard.default_limits(), self._source_len)
        token = _guard.CURRENT.set(budget)
        try:
            obj = super().load()
            return _guard.finalize(obj, self._what) if budget.pending else obj
        finally:
            _guard.CURRENT.reset(token)

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        # Python-2 era names (protocol < 3), mapped as pickle's own find_class does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._what}: refusing to load global {module}.{name} (not on the allow-list)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UnsafePickleError(f"{self._what}: unexpected persistent id {pid!r}")
        return self._persistent(pid)


def restricted_loads(
    data: bytes,
    what: str,
    allowed: Mapping[tuple[str, str], Any] | None = None,
    limits: PickleLimits | None = None,
) -> Any:
    """Unpickle ``data`` building only allow-listed objects (default: basics + numpy).

    Raises ``UnsafePickleError`` naming ``what`` (e.g. ``"file.lmdb key b'3'"``) for a refused
    global or a size over ``limits`` (default ``default_limits()``), and
    ``pickle.UnpicklingError`` naming it for a corrupt stream.
    """
    table = allowed if allowed is not None else {**BASIC_GLOBALS, **NUMPY_GLOBALS}
    limits = limits or _guard.default_limits()  # a bad $OMNI_PICKLE_MAX_BYTES is a ValueError, not a bad pickle
    try:
        return RestrictedUnpickler(io.BytesIO(data), table, what, limits=limits, source_len=len(data)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # corrupt stream: name the source
        raise pickle.UnpicklingError(f"{what}: cannot unpickle ({type(exc).__name__}: {exc})") from exc


# --------------------------------------------------------------------------- archives
def _inside(root: str, candidate: str) -> bool:
    """Whether the real path ``candidate`` is ``root`` or below it (both already realpath'd)."""
    return candidate == root or candidate.startswith(root.rstrip(os.sep) + os.sep)


def _member_rel(name: str, archive: Path) -> Path:
    """The member's relative path, refusing absolute, drive, NUL, empty and escaping names."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute or empty path")
    rel = os.path.normpath(name)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside the extraction folder")
    return Path(rel)


def _link_error(archive: Path, name: str, kind: str, target: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive}: member {name!r} is a {kind} to {target!r}; archives holding links are refused"
    )


def _tar_plan(tf: tarfile.TarFile, archive: Path, tmp: Path) -> list[tuple[tarfile.TarInfo, Path]]:
    """Every member checked (no links, devices or escapes; tarfile's ``data`` filter too)."""
    data_filter = getattr(tarfile, "data_filter", None)
    plan = []
    for m in tf.getmembers():
        rel = _member_rel(m.name, archive)
        if m.issym():
            raise _link_error(archive, m.name, "symbolic link", m.linkname)
        if m.islnk():
            raise _link_error(archive, m.name, "hard link", m.linkname)
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is not a file or folder (device, fifo or other)")
        if data_filter is not None:
            try:
                data_filter(m, str(tmp))
            except tarfile.FilterError as exc:
                raise UnsafeArchiveError(f"{archive}: member {m.name!r} refused: {exc}") from None
        plan.append((m, rel))
    return plan


def _zip_plan(zf: zipfile.ZipFile, archive: Path) -> list[tuple[zipfile.ZipInfo, Path]]:
    """Every member checked: symlinks (mode ``S_IFLNK``), devices and escapes refused."""
    plan = []
    for info in zf.infolist():
        rel = _member_rel(info.filename, archive)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise _link_error(archive, info.filename, "symbolic link", zf.read(info).decode("utf-8", "replace")[:200])
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is not a file or folder (mode {oct(kind)})")
        plan.append((info, rel))
    return plan


def _open_new(real_tmp: str, rel: Path, archive: Path, name: str) -> int:
    """A descriptor for writing ``real_tmp/rel``: its folder's real path must lie inside
    ``real_tmp`` and the file itself is never followed if it is a link."""
    dest = os.path.join(real_tmp, rel)
    parent = os.path.dirname(dest)
    try:
        os.makedirs(parent, exist_ok=True)
        if not _inside(real_tmp, os.path.realpath(parent)):
            raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside the extraction folder")
        return os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise UnsafeArchiveError(f"{archive}: member {name!r} clashes with another member ({exc.strerror})") from None


def _make_dir(real_tmp: str, rel: Path, archive: Path, name: str) -> None:
    dest = os.path.join(real_tmp, rel)
    try:
        os.makedirs(dest, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise UnsafeArchiveError(f"{archive}: member {name!r} clashes with another member ({exc.strerror})") from None
    if not _inside(real_tmp, os.path.realpath(dest)):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside the extraction folder")


def _write_members(
    opener: Callable[[Any], Any], plan: list, is_dir: Callable[[Any], bool], real_tmp: str, archive: Path
) -> list[Path]:
    written: list[Path] = []
    for member, rel in plan:
        name = getattr(member, "name", None) or member.filename
        if is_dir(member):
            _make_dir(real_tmp, rel, archive, name)
            continue
        fd = _open_new(real_tmp, rel, archive, name)
        with opener(member) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst)
        written.append(rel)
    return written


def _move_into(real_tmp: str, real_root: str, archive: Path) -> None:
    """Move the extracted tree into the root, refusing to pass through any link already there."""
    for dirpath, _dirnames, filenames in os.walk(real_tmp):
        rel = os.path.relpath(dirpath, real_tmp)
        target_dir = os.path.normpath(os.path.join(real_root, rel))
        os.makedirs(target_dir, exist_ok=True)
        if not _inside(real_root, os.path.realpath(target_dir)):
            raise UnsafeArchiveError(
                f"{archive}: {target_dir} is a link leading outside {real_root}; not extracting there"
            )
        for f in filenames:
            dest = os.path.join(target_dir, f)
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise UnsafeArchiveError(f"{archive}: {dest} is a folder; not replacing it with a file")
            os.replace(os.path.join(dirpath, f), dest)


def safe_extract(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract a tar (any compression) or zip archive into ``target``; return the files written.

    Refuses, before writing anything, every symbolic or hard link member (tar, and zip entries
    whose mode says ``S_IFLNK``), devices and fifos, and members with absolute paths or ``..``
    leaving ``target``; tar members also pass tarfile's ``data`` filter. Files are written into a
    fresh folder beside ``target`` (each parent's real path checked, never through a link) and
    moved in place at the end, so a refused archive leaves ``target`` untouched. A damaged
    archive raises ``ArchiveError`` naming it.
    """
    archive = Path(archive)
    real_root = os.path.realpath(target)
    os.makedirs(real_root, exist_ok=True)
    real_tmp = os.path.realpath(tempfile.mkdtemp(prefix=".extract-", dir=os.path.dirname(real_root)))
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    written = _write_members(zf.open, _zip_plan(zf, archive), zipfile.ZipInfo.is_dir, real_tmp, archive)
            elif tarfile.is_tarfile(archive):
                with tarfile.open(archive) as tf:
                    plan = _tar_plan(tf, archive, Path(real_tmp))
                    written = _write_members(tf.extractfile, plan, tarfile.TarInfo.isdir, real_tmp, archive)
            else:
                raise ArchiveError(f"{archive}: not a tar or zip archive")
        except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
            raise ArchiveError(f"{archive}: damaged or unreadable archive ({type(exc).__name__}: {exc})") from None
        _move_into(real_tmp, real_root, archive)
        return [Path(real_root) / rel for rel in written]
    finally:
        shutil.rmtree(real_tmp, ignore_errors=True)


# --------------------------------------------------------------------------- names
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(source_id: object, max_len: int = 100) -> str:
    """A file-name and shell-safe form of ``source_id``: ``[A-Za-z0-9._-]`` only, never empty,
    never starting with ``-`` or ``.``. Ids that had to be changed get a short hash suffix, so two
    different ids never map to the same name."""
    text = str(source_id)
    cleaned = _SAFE.sub("_", text).lstrip("-.")
    if cleaned == text and cleaned and len(cleaned) <= max_len:
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    head = cleaned[: max(0, max_len - 11)]
    return f"{head}_{digest}" if head else f"id_{digest}"
