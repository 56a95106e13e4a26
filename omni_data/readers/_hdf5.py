"""Partitioning of "one group per molecule" HDF5 files (SPICE, ANI-1x/2x, Transition1x).

Why: these files hold conformers as leading-axis slices of per-group datasets. A partition is a
range of *global* conformer indices (groups in sorted depth-first order, conformers in file order)
plus the group and in-group offset where it starts, so ``read`` slices only its own conformers
(memory bounded by the partition) and ``source_index`` is that global index.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_data.readers import Partition, ReaderError

# What h5py raises on a damaged file (bad B-tree or heap signatures, short reads, undecodable names):
# while listing groups it fails the file (ReaderError); while reading one group's data, that group.
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError)


def open_h5(path: str | Path) -> Any:
    """Open read-only; ReaderError naming the file when it is not HDF5."""
    import h5py

    try:
        return h5py.File(str(path), "r")
    except OSError as exc:
        raise ReaderError(f"{path}: cannot open as HDF5 ({exc})") from exc


def leaves(root: Any, markers: Sequence[str], prefix: str = "") -> list[str]:
    """Paths (relative to ``root``) of every group holding one of the ``markers`` datasets, sorted
    depth-first; a leaf's own subgroups are leaves too when they hold a marker (Transition1x)."""
    import h5py

    out: list[str] = []
    for name in sorted(root.keys()):
        obj = root.get(name, getlink=False)
        if not isinstance(obj, h5py.Group):
            continue
        path = f"{prefix}{name}"
        if any(isinstance(obj.get(m), h5py.Dataset) for m in markers):
            out.append(path)
        out.extend(leaves(obj, markers, f"{path}/"))
    return out


def n_conformers(group: Any, markers: Sequence[str]) -> int:
    for m in markers:
        if m in group:
            return int(group[m].shape[0])
    return 0


@dataclass(frozen=True)
class Slice:
    """Conformers ``lo:hi`` of group ``path``; the first has global index ``first``."""

    path: str
    lo: int
    hi: int
    first: int


def hdf5_partitions(path: Path, target: int, markers: Sequence[str], roots: Sequence[str] = ("",)) -> list[Partition]:
    """Consecutive runs of about ``target`` conformers over the leaf groups under ``roots``."""
    target = max(1, int(target))
    with open_h5(path) as h5:
        groups, counts = _index(h5, path, markers, roots)
    parts: list[Partition] = []
    total = 0
    start, group, offset, size = 0, None, 0, 0
    for g, n in zip(groups, counts):
        k = 0
        while k < n:
            if group is None:
                group, offset, start, size = g, k, total, 0
            take = min(n - k, target - size)
            size += take
            k += take
            total += take
            if size >= target:
                parts.append(Partition(str(path), start, total, (("group", group), ("offset", offset))))
                group = None
    if group is not None:
        parts.append(Partition(str(path), start, total, (("group", group), ("offset", offset))))
    return parts


def _index(h5: Any, path: str | Path, markers: Sequence[str], roots: Sequence[str]) -> tuple[list[str], list[int]]:
    """(leaf groups, conformers in each); ReaderError naming the file when its index is damaged."""
    try:
        groups = _leaf_list(h5, markers, roots)
        return groups, [n_conformers(h5[g], markers) for g in groups]
    except H5_ERRORS as exc:
        raise ReaderError(f"{path}: damaged HDF5 group index ({type(exc).__name__}: {exc})") from exc


def _leaf_list(h5: Any, markers: Sequence[str], roots: Sequence[str]) -> list[str]:
    out: list[str] = []
    for r in roots:
        if r and r not in h5:
            continue
        base = h5[r] if r else h5
        out.extend(leaves(base, markers, f"{r}/" if r else ""))
    return out


def slices(h5: Any, part: Partition, markers: Sequence[str], roots: Sequence[str] = ("",)) -> Iterator[Slice]:
    """The group slices making up ``part`` (see ``hdf5_partitions``)."""
    groups, counts = _index(h5, part.path, markers, roots)
    first_group = part.get("group")
    try:
        i = groups.index(first_group)
    except ValueError:
        raise ReaderError(f"{part.path}: group {first_group!r} of partition {part.key} not found") from None
    remaining = (part.stop if part.stop is not None else 2**62) - part.start
    lo, index = int(part.get("offset", 0)), part.start
    while remaining > 0 and i < len(groups):
        hi = min(counts[i], lo + remaining)
        if hi > lo:
            yield Slice(groups[i], lo, hi, index)
            remaining -= hi - lo
            index += hi - lo
        i, lo = i + 1, 0


def text(value: Any) -> str:
    """A scalar/1-element HDF5 string (bytes or str, possibly in an array) as ``str``."""
    import numpy as np

    arr = np.asarray(value).reshape(-1)
    item = arr[0] if arr.size else ""
    return item.decode("utf-8") if isinstance(item, bytes) else str(item)
