"""A shard's quarantine file (Parquet: the inputs its partition rejected, with reasons), read
only after its size matches the catalog and the table passes ``validate(full=True)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = ["read_quarantine"]


def read_quarantine(path: Path, meta: dict[str, Any] | None = None) -> pa.Table:
    """The quarantine table at ``path``; ``ValueError`` naming it when damaged."""
    import pyarrow.parquet as pq

    from omni_data.store.lmdb import ShardError

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ShardError(f"{path}: file is missing") from None
    if meta is not None and "bytes" in meta and len(data) != meta["bytes"]:
        raise ShardError(f"{path}: {len(data)} bytes on disk, the catalog says {meta['bytes']}")
    if meta is not None and "crc32" in meta:
        import zlib

        if zlib.crc32(data) != meta["crc32"]:
            raise ShardError(f"{path}: checksum mismatch (damaged file)")
    try:
        table = pq.read_table(pa.BufferReader(data))
        table.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ShardError(f"{path}: unreadable quarantine file ({exc})") from None
    return table
