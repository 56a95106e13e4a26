"""Frame hashes written at ingest, so that frames already in the store are noticed.

Why: the same file ingested again under another dataset or file name gets new ids, so the store
takes every frame a second time; only ``omni-data dedup`` would find them. Each ingested shard
gets a sidecar (``STORE/sidecars/frame_hash/<shard>.npz``: ``hash`` uint64 and ``ids``, aligned
with the shard's rows); at the end of an ingest the new shards' hashes are looked up among the
shards that were there before and among each other, and one warning line gives the count and an
example. The hash is exact and cheap (blake2b of the atomic numbers, positions and cell rounded
to 1e-6 Å, and pbc, in the order given): it finds copies, not rotated, translated or permuted
frames (``omni-data dedup`` does that).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omni_data.schema import Record

__all__ = ["frame_hash", "write_hashes", "read_hashes", "Repeats", "find_repeats"]

SIDECAR = "frame_hash"
ROUND = 1e-6  # Å


def _quantised(values: np.ndarray) -> bytes:
    """``values`` rounded to ``ROUND`` as float64 bytes (``+ 0.0`` makes -0.0 and 0.0 equal)."""
    q = np.rint(np.asarray(values, dtype=np.float64) * (1.0 / ROUND))
    q += 0.0
    return q.tobytes()


def frame_hash(record: Record) -> int:
    """64-bit hash of one frame's geometry (numbers, positions, cell rounded to ``ROUND``, pbc)."""
    numbers = record.numbers
    if not (type(numbers) is np.ndarray and numbers.dtype == np.int64):
        numbers = np.asarray(numbers, dtype=np.int64)
    h = hashlib.blake2b(numbers.tobytes(), digest_size=8)
    h.update(_quantised(record.positions))
    if record.cell is not None:
        h.update(b"cell")
        h.update(_quantised(record.cell))
    h.update(np.asarray(record.pbc, dtype=bool).tobytes())
    return int.from_bytes(h.digest(), "little")


def _path(store: Path, shard: str) -> Path:
    from omni_data.store import sidecar_path

    return sidecar_path(Path(store), SIDECAR, shard, ".npz")


def write_hashes(store: Path, shard: str, records: Sequence[Record]) -> None:
    """Write ``shard``'s frame-hash sidecar atomically (temporary file, then rename)."""
    final = _path(store, shard)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.savez(fh, hash=np.array([frame_hash(r) for r in records], dtype=np.uint64))
    os.replace(tmp, final)


def read_hashes(store: Path, shard: str) -> np.ndarray | None:
    """The frame hashes of ``shard`` in row order, or None when it has no sidecar (written by
    an older Omni or another command)."""
    path = Path(store) / "sidecars" / SIDECAR / f"{shard}.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        return data["hash"]


@dataclass
class Repeats:
    """Frames of this run whose geometry was already in the store (or earlier in this run)."""

    count: int = 0
    example_new: str = ""
    example_old: str = ""
    unchecked_shards: int = 0

    def warning(self) -> str | None:
        if not self.count:
            return None
        return (
            f"WARNING: {self.count} frames ingested now have the same geometry as frames already in the "
            f"store (e.g. {self.example_new} = {self.example_old}); the same file under another name or "
            f"dataset? `omni-data dedup` lists and drops them"
        )


def find_repeats(store: Path, old_shards: Sequence[str], new_shards: Sequence[str]) -> Repeats:
    """Count the frames of ``new_shards`` whose hash is in ``old_shards``, in an earlier new
    shard or earlier in the same shard (memory: 8 bytes per frame of the store)."""
    out = Repeats()
    seen: list[np.ndarray] = []
    for name in old_shards:
        hashes = read_hashes(store, name)
        if hashes is None:
            out.unchecked_shards += 1
            continue
        seen.append(hashes)
    known = np.unique(np.concatenate(seen)) if seen else np.zeros(0, np.uint64)
    example: tuple[str, int] | None = None
    for name in new_shards:
        hashes = read_hashes(store, name)
        if hashes is None:
            continue
        first = np.zeros(len(hashes), dtype=bool)
        first[np.unique(hashes, return_index=True)[1]] = True
        hit = np.isin(hashes, known) | ~first  # in the store already, or earlier in this shard
        if hit.any():
            out.count += int(hit.sum())
            if example is None:
                example = (name, int(np.flatnonzero(hit)[0]))
        known = np.union1d(known, hashes)
    if example is not None:
        try:
            out.example_new, out.example_old = _example(store, [*old_shards, *new_shards], *example)
        except (KeyError, ValueError, OSError):  # the example is a courtesy: the count stands without it
            out.example_new, out.example_old = f"{example[0]} row {example[1]}", "?"
    return out


def _example(store: Path, shards: Iterable[str], shard: str, row: int) -> tuple[str, str]:
    """The id at ``row`` of ``shard`` and the id of the first other frame with its hash."""
    from omni_data.store import Store

    opened = Store(store)
    hashes = read_hashes(store, shard)
    if hashes is None:
        raise KeyError(f"{store}: shard {shard!r} has no frame-hash sidecar")
    value = hashes[row]
    new_id = str(opened.table(["id"], shard=shard).column("id")[row])
    for name in shards:
        other = read_hashes(store, name)
        if other is None:
            continue
        for k in np.flatnonzero(other == value):
            if name != shard or int(k) != row:
                return new_id, str(opened.table(["id"], shard=name).column("id")[int(k)])
    return new_id, "?"
