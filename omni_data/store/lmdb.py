"""LMDB shards: one single-file LMDB per shard, one msgpack value per record.

Keys: ``b"r" + uint64 big-endian row`` -> record (``codec.encode_record``); ``b"i" + id`` ->
uint64 row (the id index); ``b"__index__"`` -> msgpack ``{"n", "codec", "shard"}``; ``b"~rows"``
-> the row table (below). Big-endian row keys sort in row order, so the whole shard is written
with ``append=True`` in one transaction. Readers open read-only, ``lock=False`` (files are
immutable once in the catalog) and ``readahead=False`` (random access), once per process.

The row table lets the C reader go straight from a row to its bytes in the mapped file, skipping
the B-tree descent and py-lmdb's ``get`` (``_fastcodec.LmdbRows``; with prefetching, a random
read of a large store 1.9x faster). Its value is ``<8sQQQ`` (``b"OMNIROW1"``, rows, LMDB page
size, the file offset of this value) then one little-endian uint64 per row: the file offset of
the LMDB leaf node holding that row in the low 40 bits, the length of its value (at most
2**24 - 1) in the high 24, so the reader can ask for all of the row's cache lines at once.
``write_lmdb`` reserves it (zeros) as the last key of the one write transaction, so no page
moves afterwards, then fills it in place once the file is complete. The reader checks every
node it is sent to (key, flags, bounds) and reads through LMDB where a check fails; a shard
without the table (written before it existed, or on a machine whose LMDB layout the C reader
does not read) is read through LMDB throughout.
"""
from __future__ import annotations

import mmap
import os
import struct
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import lmdb
import msgpack
import numpy as np

from omni_data.store import codec
from omni_data.store.codec import CODEC_VERSION, READABLE_VERSIONS, decode_record_py
from omni_data.schema import Record

INDEX_KEY = b"__index__"
ROWS_KEY = b"~rows"  # sorts after every b"r" key: appended last
ROWS_MAGIC = b"OMNIROW1"
_ROWS_HEADER = struct.Struct("<8sQQQ")  # magic, rows, LMDB page size, file offset of the table
_OFFSET_BITS = 40  # a table entry: node offset | min(value length, 2**24 - 1) << 40
_LENGTH_CAP = (1 << 24) - 1
_ROW = struct.Struct(">Q")
_ROW_KEY = struct.Struct(">cQ")  # b"r" + row in one pack call (hot path)

# the C reader (``_fastcodec``: LmdbRows, lmdb_row) when the C decoder is in use
_C = codec._fastcodec if codec.ACCELERATED else None

# Bumped in a forked child: per-thread transactions check it instead of calling os.getpid()
# (a system call) on every read.
_FORK = [0]
os.register_at_fork(after_in_child=lambda: _FORK.__setitem__(0, _FORK[0] + 1))


def row_key(row: int) -> bytes:
    return _ROW_KEY.pack(b"r", row)


def id_key(record_id: str) -> bytes:
    return b"i" + record_id.encode("utf-8")


def write_lmdb(path: Path, shard: str, ids: Sequence[str], values: Sequence[bytes]) -> None:
    """Write encoded records to a new single-file LMDB at ``path`` in one transaction, then sync."""
    table = _ROWS_HEADER.size + 8 * len(values) if values else 0
    payload = sum(len(v) for v in values) + sum(len(i) for i in ids) + table
    # B-tree pages, key overhead and overflow-page rounding: generous headroom, sparse on disk.
    map_size = max(1 << 20, 4 * payload + 4096 * (2 * len(values) + 64))
    # meminit=True zero-fills unused page space: the same records give byte-identical files.
    env = lmdb.open(str(path), map_size=map_size, subdir=False, lock=False, metasync=True,
                    sync=True, readahead=False, meminit=True)
    try:
        with env.begin(write=True) as txn:
            # append=True needs ascending keys: "__index__" < "i..." < "r..." (bytewise).
            index = {"n": len(values), "codec": CODEC_VERSION, "shard": shard}
            txn.put(INDEX_KEY, msgpack.packb(index), append=True)
            for row, record_id in sorted(enumerate(ids), key=lambda t: t[1].encode("utf-8")):
                txn.put(id_key(record_id), _ROW.pack(row), append=True)
            for row, value in enumerate(values):
                txn.put(row_key(row), value, append=True)
            if table:  # reserved now, filled below: nothing is written after it, so no page moves
                txn.put(ROWS_KEY, bytes(table), append=True)
        env.sync(True)
    finally:
        env.close()
    if table and _fill_row_table(path, [len(v) for v in values]):
        _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _address(view: memoryview) -> int:
    """Address of the first byte of a read-only buffer (a py-lmdb ``buffers=True`` view)."""
    return np.frombuffer(view, np.uint8).ctypes.data


def _fill_row_table(path: Path, sizes: Sequence[int]) -> bool:
    """Fill the row table ``write_lmdb`` reserved in the closed file at ``path`` (rows of
    ``sizes`` bytes): where py-lmdb's mapping shows each row key, turned into a file offset
    through the page header (``mp_pgno``), then checked against the file's own bytes before
    anything is written. False, leaving the table zero (readers then go through LMDB), where
    the LMDB layout is not the one ``_fastcodec.LmdbRows`` reads (64-bit little-endian, pages
    the size of the mapping's)."""
    import ctypes

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
            if not cursor.set_key(row_key(0)):
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
    size = _ROWS_HEADER.size + 8 * n
    if nodes.min() < 0 or nodes.max() >= 1 << _OFFSET_BITS:
        return False
    hints = np.minimum(lengths, _LENGTH_CAP).astype(np.uint64) << np.uint64(_OFFSET_BITS)
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
        f.write(_ROWS_HEADER.pack(ROWS_MAGIC, n, psize, at) + entries.astype("<u8").tobytes())
    return True


def row_table_problems(data: np.ndarray, entries: np.ndarray, psize: int) -> np.ndarray:
    """Which rows' table ``entries`` do not lead, in the file bytes ``data``, to their own row:
    the checks ``_fastcodec.LmdbRows`` makes on every read (node in the file, key ``b"r" + row``,
    flags, value inside the file, overflow page header), plus the length hint, for every row at
    once (the writer before filling the table, ``verify`` after)."""
    entries = np.asarray(entries, np.uint64)
    n, size = len(entries), int(data.size)
    nodes = (entries & np.uint64((1 << _OFFSET_BITS) - 1)).astype(np.int64)
    bad = nodes > size - 25  # header, key and (for an overflow value) its page number
    at = np.where(bad, 0, nodes)[:, None]
    u16 = data[at + np.arange(8)].view("<u2")  # lo, hi, flags, key size
    length = u16[:, 0].astype(np.int64) | (u16[:, 1].astype(np.int64) << 16)
    expected = np.zeros((n, 9), np.uint8)
    expected[:, 0] = ord("r")
    expected[:, 1:] = np.arange(n, dtype=">u8").view(np.uint8).reshape(n, 8)
    bad |= (u16[:, 3] != 9) | (data[at + np.arange(8, 17)] != expected).any(axis=1)
    bad |= (entries >> np.uint64(_OFFSET_BITS)).astype(np.int64) != np.minimum(length, _LENGTH_CAP)
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


# One environment per file per process: py-lmdb refuses to open the same file twice in a
# process, and two Store objects on one store must both work. Keyed by (device, inode) so a
# replaced file gets a fresh environment.
_ENVS: dict[tuple[int, int], list] = {}


def _acquire(path: Path) -> tuple[tuple[int, int], lmdb.Environment]:
    st = os.stat(path)
    key = (st.st_dev, st.st_ino)
    slot = _ENVS.get(key)
    if slot is not None and slot[0] != os.getpid():
        # Inherited through fork: py-lmdb still lists it as open here. Closing the child's copy
        # only unmaps it in this process (read-only, no lock file), then we open our own.
        slot[1].close()
        slot = None
    if slot is None:
        env = lmdb.open(str(path), subdir=False, readonly=True, lock=False,
                        readahead=False, meminit=False, max_readers=2048)
        slot = _ENVS[key] = [os.getpid(), env, 0]
    slot[2] += 1
    return key, slot[1]


def _release(key: tuple[int, int]) -> None:
    slot = _ENVS.get(key)
    if slot is None or slot[0] != os.getpid():
        return
    slot[2] -= 1
    if slot[2] <= 0:
        del _ENVS[key]
        slot[1].close()


class LmdbFile:
    """A read-only LMDB file that never changes once catalogued, opened lazily per process.

    Each thread keeps its own read transaction, so one object can serve several threads (e.g. a
    threaded Dask worker); nothing open survives pickling or a fork. ``LmdbShard`` (records) and
    ``idindex.IdSegment`` (the store's id index) are built on it.
    """

    kind = "LMDB file"

    def __init__(self, path: Path):
        self.path = Path(path)
        self._env: lmdb.Environment | None = None
        self._key: tuple[int, int] | None = None
        self._pid = -1
        self._local = threading.local()

    def _open(self) -> lmdb.Environment:
        if self._env is None or self._pid != os.getpid():
            if not self.path.is_file():
                raise FileNotFoundError(f"{self.path}: {self.kind} is missing")
            self._key, self._env = _acquire(self.path)
            self._pid = os.getpid()
        return self._env

    def _state(self) -> tuple[lmdb.Transaction, int, Any]:
        """This thread's (long-lived read transaction, fork counter, its ``get``); the file never
        changes once catalogued, so one transaction serves every read of this thread."""
        state = getattr(self._local, "state", None)
        if state is not None and state[1] == _FORK[0] and self._env is not None:
            return state
        # buffers=True: get() returns a view of the mapped page, not a copy; every caller decodes
        # or copies it at once (the view is valid while this read transaction lives).
        txn = self._open().begin(buffers=True)
        state = self._local.state = (txn, _FORK[0], txn.get)
        return state

    def _txn(self) -> lmdb.Transaction:
        """This thread's long-lived read transaction."""
        return self._state()[0]

    def _get(self, key: bytes) -> bytes | None:
        value = self._txn().get(key)
        return None if value is None else bytes(value)

    def scan(self, prefix: bytes = b"", values: bool = True) -> Iterator[tuple[bytes, bytes | None]]:
        """(key, value) of every key starting with ``prefix``, in key order: one cursor pass in
        its own short read transaction (value None with ``values=False``)."""
        with self._open().begin(buffers=False) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(prefix):
                return
            if not values:
                for key in cursor.iternext(keys=True, values=False):
                    if not key.startswith(prefix):
                        break
                    yield key, None
                return
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                yield key, value

    def close(self) -> None:
        state = getattr(self._local, "state", None)
        if state is not None and state[1] == _FORK[0] and self._pid == os.getpid():
            state[0].abort()
        self._local = threading.local()
        if self._key is not None and self._pid == os.getpid():
            _release(self._key)
        self._env, self._key, self._pid = None, None, -1

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]
        self._env, self._key, self._pid = None, None, -1
        self._local = threading.local()


class LmdbShard(LmdbFile):
    """Read-only access to one LMDB shard of records."""

    kind = "LMDB shard file"

    def __init__(self, path: Path):
        super().__init__(path)
        try:
            index = self._index()
        except ValueError:
            self.close()
            raise
        if index.get("codec", 1) not in READABLE_VERSIONS:
            self.close()
            raise ValueError(f"{self.path}: record codec {index.get('codec')!r} is not one of {READABLE_VERSIONS} "
                             "(written by a newer Omni?)")
        self.n = int(index["n"])
        self._fast: Any = None  # _fastcodec.LmdbRows over the row table, built by rows()
        self._fast_built = False
        if self.rows() is not None:
            # rows are read from the table's mapping: the LMDB environment (a second mapping of
            # the file) is opened again only by a read that needs it (find, scan, a fallback)
            LmdbFile.close(self)

    def rows(self) -> Any:
        """The C reader's ``LmdbRows`` over this file's row table (built once per open), or None:
        no C decoder, a shard written before the table existed, or a table that does not match
        this file. A table shown here is still checked node by node on every read."""
        if self._fast_built:
            return self._fast
        self._fast, self._fast_built = None, True
        if _C is None or self.n == 0:
            return None
        raw = self._txn().get(ROWS_KEY)
        if raw is None or len(raw) != _ROWS_HEADER.size + 8 * self.n:
            return None
        header = bytes(raw[:_ROWS_HEADER.size])
        magic, n, psize, at = _ROWS_HEADER.unpack(header)
        if magic != ROWS_MAGIC or n != self.n:
            return None
        with open(self.path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if hasattr(mapped, "madvise"):
            mapped.madvise(mmap.MADV_RANDOM)  # as readahead=False: a read wants one row
        if mapped[at:at + _ROWS_HEADER.size] != header:
            mapped.close()
            return None
        try:
            self._fast = _C.LmdbRows(mapped, at + _ROWS_HEADER.size, n, psize)
        except ValueError:  # a page size it does not take, a machine whose layout it does not read
            mapped.close()
        return self._fast

    def row_table_problem(self) -> str | None:
        """What is wrong with this file's row table, or None when it leads every row to its own
        record or the file has none (written before it existed, or left empty by the writer on a
        machine whose LMDB layout the C reader does not read): ``omni-data verify``."""
        raw = self._txn().get(ROWS_KEY)
        if raw is None:
            return None
        raw = bytes(raw)
        if len(raw) != _ROWS_HEADER.size + 8 * self.n:
            return f"row table holds {len(raw)} bytes, {self.n} rows need {_ROWS_HEADER.size + 8 * self.n}"
        if not any(raw):
            return None  # reserved and left empty: reads go through LMDB
        magic, n, psize, at = _ROWS_HEADER.unpack(raw[:_ROWS_HEADER.size])
        if magic != ROWS_MAGIC or n != self.n:
            return f"row table header {raw[:_ROWS_HEADER.size]!r} is not {ROWS_MAGIC!r} for {self.n} rows"
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            data = np.frombuffer(mapped, np.uint8)
            try:
                if bytes(data[at:at + len(raw)]) != raw:
                    return f"row table says it starts at byte {at}, where the file holds something else"
                entries = np.frombuffer(raw, "<u8", offset=_ROWS_HEADER.size)
                bad = np.flatnonzero(row_table_problems(data, entries, psize))
            finally:
                del data
        if bad.size:
            return f"row table: {bad.size} of {self.n} rows do not lead to their record (first: row {int(bad[0])})"
        return None

    def _index(self) -> dict:
        raw = self._get(INDEX_KEY)
        if raw is None:
            raise ValueError(f"{self.path}: not an Omni LMDB shard (no {INDEX_KEY!r} key)")
        return msgpack.unpackb(raw)

    def __len__(self) -> int:
        return self.n

    def raw(self, row: int) -> bytes:
        """The encoded value at ``row``."""
        if not 0 <= row < self.n:
            raise IndexError(f"{self.path}: row {row} out of range 0..{self.n - 1}")
        value = self._get(row_key(row))
        if value is None:
            raise KeyError(f"{self.path}: row {row} missing although the index says {self.n} rows")
        return value

    def record(self, row: int) -> Record:
        """The decoded record at ``row``: one get, one decode (``Store[i]`` does the same in C,
        ``_fastcodec.StoreIndex``, once the shard is open)."""
        if not 0 <= row < self.n:
            raise IndexError(f"{self.path}: row {row} out of range 0..{self.n - 1}")
        read_row = codec.read_row_c
        if read_row is not None:
            fast = self.rows()
            if fast is not None:  # C: the row table, the node, the value, decoded
                record = _C.lmdb_row(fast, row)
                if record is not NotImplemented:
                    return record
            record = read_row(self.getter(), row)  # C: key, lookup through LMDB and decode
            if record is not None and record is not NotImplemented:
                return record
        value = self.getter()(_ROW_KEY.pack(b"r", row))
        if value is None:
            raise KeyError(f"{self.path}: row {row} missing although the index says {self.n} rows")
        try:
            return decode_record_py(value)
        except (ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException) as exc:
            raise ValueError(f"{self.path}: row {row}: undecodable record value ({exc})") from None

    def getter(self) -> Any:
        """This thread's ``txn.get`` (for ``codec.read_rows_c`` over rows of several shards)."""
        return self._state()[2]

    def reader(self) -> Any:
        """What ``codec.read_rows_c`` reads this shard's rows with: its ``LmdbRows``, else the
        ``txn.get`` of this thread."""
        fast = self.rows()
        return self.getter() if fast is None else fast

    def close(self) -> None:
        super().close()
        self._fast, self._fast_built = None, False  # the mapping goes when no reader holds it

    def records(self, rows: Sequence[int]) -> list[Record]:
        """The decoded records at ``rows`` (a list of ints), in that order: ``Store.get_many``."""
        if rows and not (0 <= min(rows) and max(rows) < self.n):
            bad = next(r for r in rows if not 0 <= r < self.n)
            raise IndexError(f"{self.path}: row {bad} out of range 0..{self.n - 1}")
        read_rows = codec.read_rows_c
        if read_rows is None:
            return [self.record(row) for row in rows]
        out = read_rows(self.reader(), rows)
        for k, record in enumerate(out):
            if record is None or record is NotImplemented:  # missing or unusual: the Python path says why
                out[k] = self.record(rows[k])
        return out

    def iter_raw(self) -> Iterator[bytes]:
        """Every encoded record in row order (one cursor scan, no per-key lookups)."""
        for _, value in self.scan(b"r"):
            yield value

    def row_keys(self) -> int:
        """How many row keys the file really holds (a full key scan, for verify)."""
        return sum(1 for _ in self.scan(b"r", values=False))

    def find(self, record_id: str) -> int | None:
        value = self._txn().get(id_key(record_id))  # a view of the page: unpacked at once
        return None if value is None else _ROW.unpack(value)[0]

    def iter_ids(self) -> Iterator[tuple[bytes, int]]:
        """Every (id as UTF-8 bytes, row) of the shard's id keys, in byte order of the id."""
        for key, value in self.scan(b"i"):
            yield key[1:], _ROW.unpack(value)[0]

    def __getstate__(self) -> dict:
        return {"path": self.path, "n": self.n}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.n = state["n"]
        self._fast, self._fast_built = None, False  # mapped again on first read
