"""Small helpers shared by the core readers: source labels for ids, opening compressed files.

Why: every reader must build ids that are unique across a whole dataset (several files) and
stable across runs, so the file part of an id is computed in one place.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
from pathlib import Path
from typing import IO, Any

import numpy as np

from omni_data.readers import ReaderError, ReadOptions

COMPRESSED_SUFFIXES = (".gz", ".xz", ".bz2")


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a file for binary reading, transparently decompressing .gz/.xz/.bz2; ReaderError if it cannot be opened."""
    p = str(path)
    try:
        if p.endswith(".gz"):
            return gzip.open(p, "rb")
        if p.endswith(".xz"):
            return lzma.open(p, "rb")
        if p.endswith(".bz2"):
            return bz2.open(p, "rb")
        return open(p, "rb")
    except OSError as exc:
        raise ReaderError(f"{path}: cannot open ({exc})") from exc


GENERIC_NAMES = frozenset({"OUTCAR", "vasprun.xml"})
"""File names that say nothing about their content (one per VASP run directory)."""


def source_label(path: str | Path, opts: ReadOptions) -> str:
    """The file part of a record id: the path relative to ``opts.options['root']`` if given, else the
    file name -- or, for generic names such as ``OUTCAR``, the last two directories and the name
    (``mp-1/relax/OUTCAR``), since thousands of run directories each hold one. Compression
    suffixes are dropped so ``a.xyz`` and ``a.xyz.gz`` give the same ids."""
    p = Path(path)
    root = opts.options.get("root")
    label = None
    if root:
        try:
            label = p.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            label = None
    if label is None:
        label = p.name
        bare = _strip(label)
        if bare in GENERIC_NAMES:
            label = "/".join(p.resolve().parts[-3:])
    return _strip(label)


def _strip(name: str) -> str:
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def json_scalar(value: Any) -> Any:
    """``value`` as a JSON-safe scalar/list, or ``None`` when it cannot be represented (NaN kept out)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, np.ndarray) and value.size <= 64 and value.dtype.kind in "biuf":
        return [json_scalar(v) for v in value.reshape(-1).tolist()]
    if isinstance(value, (list, tuple)) and len(value) <= 64:
        out = [json_scalar(v) for v in value]
        return out if all(o is not None for o in out) else None
    return None


def scalar_metadata(data: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    """The JSON-safe entries of ``data`` (source info/data fields) not already used as labels."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in skip:
            continue
        safe = json_scalar(value)
        if safe is not None:
            out[str(key)] = safe
    return out
