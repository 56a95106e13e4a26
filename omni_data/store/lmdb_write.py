"""Write one shard's single-file LMDB (the layout ``lmdb.py`` reads), and name a failed write.

``write_lmdb`` puts the index and the encoded records in row order in one append-only
transaction, then syncs; ``write_error`` turns a failed LMDB write into an ``OSError`` naming
the file (ENOSPC for a full disk, which LMDB reports as a short write, EIO).
"""

from __future__ import annotations

import errno
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from omni_data.store.codec import CODEC_VERSION
from omni_data.store.lmdb import INDEX_KEY, row_key

__all__ = ["write_error", "pack_index", "write_lmdb"]

_STRERROR = {os.strerror(code): code for code in errno.errorcode}
WRITE_SLACK = 4 << 20


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def write_error(exc: Exception, path: Path, needed: int) -> OSError:
    """An ``OSError`` naming ``path`` for an LMDB write that failed with ``exc``: a full disk
    (LMDB reports a short write as EIO) says ENOSPC; MDB_MAP_FULL is named as an Omni bug."""
    text = str(exc)
    if isinstance(exc, lmdb.MapFullError):
        return OSError(
            f"{path}: LMDB map size too small for this file (MDB_MAP_FULL: {text}); "
            "this is an Omni bug, please report it"
        )
    code = _STRERROR.get(text.rsplit(": ", 1)[-1]) or (errno.ENOSPC if isinstance(exc, lmdb.DiskError) else None)
    if code in (errno.EIO, None):
        free = _free_bytes(path.parent)
        try:
            have = os.stat(path).st_blocks * 512
        except OSError:
            have = 0
        if free is not None and free < max(needed - have, 0) + WRITE_SLACK:
            code = errno.ENOSPC
    if code is None:
        return OSError(f"{path}: LMDB write failed: {text}")
    return OSError(code, f"{path}: {os.strerror(code)}" + ("" if code == errno.ENOSPC else f" ({text})"))


def pack_index(index: dict[str, Any]) -> bytes:
    body = msgpack.packb(index, use_bin_type=True)
    return zlib.crc32(body).to_bytes(4, "little") + body


def write_lmdb(path: Path, shard: str, values: Sequence[bytes], strings: Sequence[str]) -> None:
    """Write encoded records (row order) to a new single-file LMDB at ``path``, then sync."""
    path = Path(path)
    payload = sum(len(v) for v in values)
    index = {
        "n": len(values),
        "codec": CODEC_VERSION,
        "format": 2,
        "shard": shard,
        "strings": list(strings),
        "max_value": max((len(v) for v in values), default=0),
    }
    try:
        _write_lmdb(path, values, index, payload)
    except lmdb.Error as exc:
        raise write_error(exc, path, payload) from exc


def _write_lmdb(path: Path, values: Sequence[bytes], index: dict[str, Any], payload: int) -> None:
    """The body of ``write_lmdb``."""
    # B-tree pages, node headers and overflow-page rounding: generous headroom, sparse on disk.
    map_size = max(1 << 20, 2 * payload + 4096 * (len(values) + 64))
    # meminit=True zero-fills unused page space: the same records give byte-identical files.
    env = lmdb.open(
        str(path), map_size=map_size, subdir=False, lock=False, metasync=True, sync=True, readahead=False, meminit=True
    )
    try:
        with env.begin(write=True) as txn:
            txn.put(INDEX_KEY, pack_index(index), append=True)  # "__index__" < "r..." bytewise
            for row, value in enumerate(values):
                txn.put(row_key(row), value, append=True)
        env.sync(True)
    finally:
        env.close()
