"""Safe handling of untrusted inputs: restricted unpickling, archive extraction, safe names.

Why: source databases (OC20/OC22/ODAC LMDBs, matsciml dev sets) ship *pickles*, and plain
``pickle.loads`` runs whatever callable the pickle names. ``restricted_loads`` builds only the
objects in an explicit allow-list (plain containers, numpy arrays, and whatever safe stand-ins a
caller adds, e.g. torch tensors rebuilt as numpy in ``readers/_pickle_tensors.py``); any other
global is refused *before* it is called. Archives (tar/zip) may hold members whose paths or links
point outside the extraction folder; ``safe_extract`` refuses them. ``safe_name`` turns any source
id into a string usable as a file name and inside a shell script.
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
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

__all__ = [
    "UnsafePickleError",
    "UnsafeArchiveError",
    "BASIC_GLOBALS",
    "NUMPY_GLOBALS",
    "RestrictedUnpickler",
    "restricted_loads",
    "safe_extract",
    "safe_name",
]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global that is not on the allow-list (it was never called)."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder, or is not a plain file/dir."""


# --------------------------------------------------------------------------- allow-listed globals
def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it to carry ``bytes`` (latin1 only)."""
    if encoding != "latin1" or not isinstance(text, str):
        raise UnsafePickleError(f"_codecs.encode only allowed as encode(str, 'latin1'), got {encoding!r}")
    return text.encode("latin1")


def _checked_dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` without object fields (object arrays could smuggle arbitrary items)."""
    dt = np.dtype(*args[:1]) if args else np.dtype(float)
    if dt.hasobject:
        raise UnsafePickleError(f"numpy object dtype {dt!r} is not allowed")
    return dt


def _np_reconstruct(cls: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise UnsafePickleError(f"numpy _reconstruct of {cls!r} is not allowed")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _np_scalar(dtype: np.dtype, data: Any = None) -> Any:
    dtype = _checked_dtype(dtype)
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("numpy scalar payload must be bytes")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _np_frombuffer(buf: Any, dtype: np.dtype, shape: Any, order: str) -> np.ndarray:
    dtype = _checked_dtype(dtype)
    arr = np.frombuffer(bytes(buf), dtype=dtype)
    return arr.reshape(shape, order="F" if order == "F" else "C").copy()


BASIC_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _latin1_encode,
}
"""Globals that build plain data and nothing else."""

NUMPY_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _checked_dtype,
}
for _core in ("numpy.core", "numpy._core"):
    NUMPY_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _np_reconstruct
    NUMPY_GLOBALS[(f"{_core}.multiarray", "scalar")] = _np_scalar
    NUMPY_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _np_frombuffer
"""numpy's own reconstruction helpers, with object dtypes refused."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves globals only through ``allowed`` (module, name) -> callable.

    ``what`` names the source (file and key) in every error. Persistent ids are refused unless a
    ``persistent_load`` callable is given (torch's legacy stream uses them for storages).
    """

    def __init__(
        self,
        file: io.BufferedIOBase | io.BytesIO,
        allowed: Mapping[tuple[str, str], Any],
        what: str,
        persistent_load: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(file)
        self._allowed = allowed
        self._what = what
        self._persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        # Python-2 era names (protocol < 3), mapped as pickle's own find_class does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{self._what}: refusing to load global {module}.{name} (not on the allow-list)") from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UnsafePickleError(f"{self._what}: unexpected persistent id {pid!r}")
        return self._persistent(pid)


def restricted_loads(data: bytes, what: str, allowed: Mapping[tuple[str, str], Any] | None = None) -> Any:
    """Unpickle ``data`` building only allow-listed objects (default: basics + numpy).

    Raises ``UnsafePickleError`` naming ``what`` (e.g. ``"file.lmdb key b'3'"``) for a refused
    global, and ``pickle.UnpicklingError`` naming it for a corrupt stream.
    """
    table = allowed if allowed is not None else {**BASIC_GLOBALS, **NUMPY_GLOBALS}
    try:
        return RestrictedUnpickler(io.BytesIO(data), table, what).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # corrupt stream: name the source
        raise pickle.UnpicklingError(f"{what}: cannot unpickle ({type(exc).__name__}: {exc})") from exc


# --------------------------------------------------------------------------- archives
def _inside(root: Path, candidate: Path) -> bool:
    try:
        candidate.relative_to(root)
        return True
    except ValueError:
        return False


def _check_member_path(root: Path, name: str, archive: Path) -> Path:
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute or empty path")
    dest = Path(os.path.normpath(root / name))
    if not _inside(root, dest):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside {root}")
    return dest


def safe_extract(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract a tar (any compression) or zip archive into ``target``; return the files written.

    Refuses, before writing anything, members with absolute paths or ``..`` that leave ``target``,
    symlinks or hard links whose destination leaves ``target``, and device/fifo members. Files are
    extracted into a temporary folder beside ``target`` and moved in place at the end, so a refused
    archive leaves ``target`` untouched.
    """
    archive = Path(archive)
    root = Path(os.path.abspath(target))
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root.parent))
    written: list[Path] = []
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    _check_member_path(root, info.filename, archive)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symlink")
                for info in infos:
                    rel = Path(os.path.normpath(info.filename))
                    if info.is_dir():
                        (tmp / rel).mkdir(parents=True, exist_ok=True)
                        continue
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(tmp / rel, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    written.append(root / rel)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    dest = _check_member_path(root, m.name, archive)
                    if m.issym() or m.islnk():
                        base = dest.parent if m.issym() else root
                        link = Path(os.path.normpath(base / m.linkname))
                        if os.path.isabs(m.linkname) or not _inside(root, link):
                            raise UnsafeArchiveError(f"{archive}: link {m.name!r} -> {m.linkname!r} leaves {root}")
                    elif not (m.isfile() or m.isdir()):
                        raise UnsafeArchiveError(f"{archive}: member {m.name!r} is not a file, folder or link")
                for m in members:
                    rel = Path(os.path.normpath(m.name))
                    if m.isdir():
                        (tmp / rel).mkdir(parents=True, exist_ok=True)
                        continue
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    if m.issym():
                        os.symlink(m.linkname, tmp / rel)
                    elif m.islnk():
                        shutil.copyfile(tmp / Path(os.path.normpath(m.linkname)), tmp / rel)
                    else:
                        src = tf.extractfile(m)
                        assert src is not None  # isfile() checked above
                        with src, open(tmp / rel, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                    written.append(root / rel)
        else:
            raise UnsafeArchiveError(f"{archive}: not a tar or zip archive")
        for path in sorted(tmp.rglob("*"), key=lambda p: len(p.parts)):
            dest = root / path.relative_to(tmp)
            if path.is_dir() and not path.is_symlink():
                dest.mkdir(parents=True, exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
