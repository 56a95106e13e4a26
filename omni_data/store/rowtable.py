"""The row table of an LMDB shard: where each row's bytes are in the file.

``lmdb.write_lmdb`` reserves the table as the shard's last key, ``b"~rows"``, and
``fill_row_table`` fills it in place once the file is closed. Its value is ``<8sQQQ``
(``b"OMNIROW1"``, rows, LMDB page size, the file offset of this value) then one little-endian
uint64 per row: the file offset of the LMDB leaf node holding that row in the low 40 bits, the
length of its value (at most 2**24 - 1) in the high 24. ``open_row_table`` maps the file for
the C reader (``_fastcodec.LmdbRows``), which goes from a row to its bytes without the B-tree
or py-lmdb and asks for all of the row's cache lines at once; ``row_table_problem`` checks a
whole table (``omni-data verify``).

The layout is LMDB 0.9's on a 64-bit little-endian machine (mdb.c: ``MDB_node`` is mn_lo,
mn_hi, mn_flags, mn_ksize as uint16, then the key, then the value or, with F_BIGDATA, the
number of its first overflow page; a page header is 16 bytes, mp_pgno first). Elsewhere no
table is written and shards read through LMDB, as shards written before the table did.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
import sys
from pathlib import Path
from typing import Any, Sequence

import lmdb
import numpy as np

from omni_data.store import codec

ROWS_KEY = b"~rows"  # sorts after every b"r" row key: appended last
ROWS_MAGIC = b"OMNIROW1"
HEADER = struct.Struct("<8sQQQ")  # magic, rows, LMDB page size, file offset of the table
OFFSET_BITS = 40  # a table entry: node offset | min(value length, 2**24 - 1) << 40
LENGTH_CAP = (1 << 24) - 1
_FIRST_ROW_KEY = b"r" + bytes(8)  # lmdb.row_key(0)

# the C reader (``_fastcodec``: LmdbRows, address) when the C decoder is in use
_C = codec._fastcodec if codec.ACCELERATED else None


def table_size(rows: int) -> int:
    """Bytes of the table of a shard of ``rows`` rows (0: none)."""
    return HEADER.size + 8 * rows if rows else 0


def _address(view: memoryview) -> int:
    """Address of the first byte of a read-only buffer (a py-lmdb ``buffers=True`` view)."""
    return np.frombuffer(view, np.uint8).ctypes.data


def fill_row_table(path: Path, sizes: Sequence[int]) -> bool:
    """Fill the row table ``write_lmdb`` reserved in the closed file at ``path`` (rows of
    ``sizes`` bytes): where py-lmdb's mapping shows each row key, turned into a file offset
    through the page header (``mp_pgno``), then checked against the file's own bytes before
    anything is written. False, leaving the table zero (readers then go through LMDB), where
    the LMDB layout is not the one ``_fastcodec.LmdbRows`` reads (64-bit little-endian, pages
    the size of the mapping's)."""
    if sys.byteorder != "little" or struct.calcsize("P") != 8:
        return False
    n = len(sizes)
    lengths = np.asarray(sizes, np.int64)
    address = _C.address if _C is not None else _address
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False, readahead=False, meminit=False)
    try:
        psize = int(env.stat()["psize"])
        if psize != mmap.PAGESIZE:  # the page of an address is found by rounding it down
            return False
        keys = np.empty(n, np.int64)
        with env.begin(buffers=True) as txn:
            cursor = txn.cursor()
            if not cursor.set_key(_FIRST_ROW_KEY):
                return False
            key, step = cursor.key, cursor.next
            for row in range(n):
                keys[row] = address(key())
                step()
            if bytes(cursor.key()) != ROWS_KEY:
                return False
            table_address = address(cursor.value())
            # the mapping starts page-aligned: page number of the first key's page -> its start
            first_page = int(keys[0]) & ~(psize - 1)
            base = first_page - psize * ctypes.c_uint64.from_address(first_page).value
    finally:
        env.close()
    nodes = keys - base - 8  # the 8-byte LMDB node header precedes the key
    at = table_address - base
    size = table_size(n)
    if nodes.min() < 0 or nodes.max() >= 1 << OFFSET_BITS:
        return False
    hints = np.minimum(lengths, LENGTH_CAP).astype(np.uint64) << np.uint64(OFFSET_BITS)
    entries = nodes.astype(np.uint64) | hints
    with open(path, "r+b") as f:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            data = np.frombuffer(mapped, np.uint8)
            ok = 0 <= at and at + size <= data.size and not data[at:at + size].any() \
                and not row_table_problems(data, entries, psize).any()
            del data
        if not ok:  # py-lmdb showed something other than this file's bytes: no table
            return False
        f.seek(at)
        f.write(HEADER.pack(ROWS_MAGIC, n, psize, at) + entries.astype("<u8").tobytes())
        f.flush()
        os.fsync(f.fileno())
    return True


def row_table_problems(data: np.ndarray, entries: np.ndarray, psize: int) -> np.ndarray:
    """Which rows' table ``entries`` do not lead, in the file bytes ``data``, to their own row:
    the checks ``_fastcodec.LmdbRows`` makes on every read (node in the file, key ``b"r" + row``,
    flags, value inside the file, overflow page header), plus the length hint, for every row at
    once (the writer before filling the table, ``verify`` after)."""
    entries = np.asarray(entries, np.uint64)
    n, size = len(entries), int(data.size)
    nodes = (entries & np.uint64((1 << OFFSET_BITS) - 1)).astype(np.int64)
    bad = nodes > size - 25  # header, key and (for an overflow value) its page number
    at = np.where(bad, 0, nodes)[:, None]
    u16 = data[at + np.arange(8)].view("<u2")  # lo, hi, flags, key size
    length = u16[:, 0].astype(np.int64) | (u16[:, 1].astype(np.int64) << 16)
    expected = np.zeros((n, 9), np.uint8)
    expected[:, 0] = ord("r")
    expected[:, 1:] = np.arange(n, dtype=">u8").view(np.uint8).reshape(n, 8)
    bad |= (u16[:, 3] != 9) | (data[at + np.arange(8, 17)] != expected).any(axis=1)
    bad |= (entries >> np.uint64(OFFSET_BITS)).astype(np.int64) != np.minimum(length, LENGTH_CAP)
    inline, big = u16[:, 2] == 0, u16[:, 2] == 1
    bad |= ~(inline | big)
    bad |= inline & (nodes + 17 + length > size)
    pgno = data[at + np.arange(17, 25)].view("<u8").ravel().astype(np.int64)
    page = np.where(big & (pgno >= 0) & (pgno <= (size - 16) // psize), pgno * psize, 0)
    head = data[page[:, None] + np.arange(16)]
    overflow_ok = (head[:, :8].view("<u8").ravel() == pgno.astype(np.uint64)) \
        & (head[:, 10:12].view("<u2").ravel() & 4 != 0) & (page + 16 + length <= size) & (page > 0)
    bad |= big & ~overflow_ok
    return bad


def open_row_table(path: Path, raw: Any, n: int) -> Any:
    """``_fastcodec.LmdbRows`` over the LMDB shard file at ``path``, whose ``b"~rows"`` value is
    ``raw`` (as py-lmdb returns it, or None) for ``n`` rows; None where there is no usable table:
    no C decoder, a shard written before the table existed, a table left empty by the writer or
    one whose header does not match this file. A table returned here is still checked node by
    node on every read."""
    if _C is None or n == 0 or raw is None or len(raw) != table_size(n):
        return None
    header = bytes(raw[:HEADER.size])
    magic, rows, psize, at = HEADER.unpack(header)
    if magic != ROWS_MAGIC or rows != n:
        return None
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mapped, "madvise"):
        mapped.madvise(mmap.MADV_RANDOM)  # as readahead=False: a read wants one row
    if mapped[at:at + HEADER.size] != header:
        mapped.close()
        return None
    try:
        return _C.LmdbRows(mapped, at + HEADER.size, n, psize)
    except ValueError:  # a page size it does not take, a machine whose layout it does not read
        mapped.close()
        return None


def row_table_problem(path: Path, raw: Any, n: int) -> str | None:
    """What is wrong with the row table ``raw`` of the shard file at ``path`` (``n`` rows), or
    None when it leads every row to its own record or there is none (written before it
    existed, or left empty by the writer on a machine whose LMDB layout the C reader does not
    read)."""
    if raw is None:
        return None
    raw = bytes(raw)
    if len(raw) != table_size(n):
        return f"row table holds {len(raw)} bytes, {n} rows need {table_size(n)}"
    if not any(raw):
        return None  # reserved and left empty: reads go through LMDB
    magic, rows, psize, at = HEADER.unpack(raw[:HEADER.size])
    if magic != ROWS_MAGIC or rows != n:
        return f"row table header {raw[:HEADER.size]!r} is not {ROWS_MAGIC!r} for {n} rows"
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        data = np.frombuffer(mapped, np.uint8)
        try:
            if bytes(data[at:at + len(raw)]) != raw:
                return f"row table says it starts at byte {at}, where the file holds something else"
            entries = np.frombuffer(raw, "<u8", offset=HEADER.size)
            bad = np.flatnonzero(row_table_problems(data, entries, psize))
        finally:
            del data
    if bad.size:
        return f"row table: {bad.size} of {n} rows do not lead to their record (first: row {int(bad[0])})"
    return None
