"""LMDB shards: one single-file LMDB per shard, one msgpack value per record.

Keys: ``b"r" + uint64 big-endian row`` -> record (``codec.encode_record``); ``b"i" + id`` ->
uint64 row (the id index); ``b"__index__"`` -> msgpack ``{"n", "codec", "shard"}``; ``b"~rows"``
-> the row table (below). Big-endian row keys sort in row order, so the whole shard is written
with ``append=True`` in one transaction. Readers open read-only, ``lock=False`` (files are
immutable once in the catalog) and ``readahead=False`` (random access), once per process.

The row table (``rowtable.py``) lets the C reader go straight from a row to its bytes in the
mapped file, without the B-tree descent or py-lmdb's ``get``; a shard without it (written before
it existed, or on a machine whose LMDB layout the C reader does not read) reads through LMDB.
"""
from __future__ import annotations

import errno
import os
import struct
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import lmdb
import msgpack

from omni_data.store import codec, rowtable
from omni_data.store.codec import CODEC_VERSION, READABLE_VERSIONS, decode_record_py
from omni_data.schema import Record

INDEX_KEY = b"__index__"
_ROW = struct.Struct(">Q")
_ROW_KEY = struct.Struct(">cQ")  # b"r" + row in one pack call (hot path)

# Bumped in a forked child: per-thread transactions check it instead of calling os.getpid()
# (a system call) on every read.
_FORK = [0]
os.register_at_fork(after_in_child=lambda: _FORK.__setitem__(0, _FORK[0] + 1))


def row_key(row: int) -> bytes:
    return _ROW_KEY.pack(b"r", row)


def id_key(record_id: str) -> bytes:
    return b"i" + record_id.encode("utf-8")


_STRERROR = {os.strerror(code): code for code in errno.errorcode}
WRITE_SLACK = 4 << 20
"""Free bytes below which a short write counts as a full disk even if the estimate says the
file needed less: LMDB flushes up to 64 pages per write, plus B-tree pages the estimate omits."""


def _free_bytes(folder: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem of ``folder`` (None if unknown)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _allocated(path: Path) -> int:
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


def write_error(exc: Exception, path: Path, needed: int) -> OSError:
    """An ``OSError`` naming ``path`` for an LMDB write that failed with ``exc`` (an ``lmdb.Error``).

    LMDB reports ENOSPC as ``DiskError``, but a disk that fills in the middle of one of its
    writes gives a short write, which LMDB reports as EIO ("Input/output error"): when the
    filesystem then has less room than the ``needed`` bytes the file was still to get (plus
    ``WRITE_SLACK``), it was a full disk and the error says ENOSPC. ``MDB_MAP_FULL`` is not a
    disk condition (the map size Omni chose was too small) and is named as such.
    """
    text = str(exc)
    if isinstance(exc, lmdb.MapFullError):
        return OSError(f"{path}: LMDB map size too small for this file (MDB_MAP_FULL: {text}); "
                       "this is an Omni bug, please report it")
    code = _STRERROR.get(text.rsplit(": ", 1)[-1]) or (errno.ENOSPC if isinstance(exc, lmdb.DiskError) else None)
    if code in (errno.EIO, None):
        free = _free_bytes(path.parent)
        if free is not None and free < max(needed - _allocated(path), 0) + WRITE_SLACK:
            code = errno.ENOSPC
    if code is None:
        return OSError(f"{path}: LMDB write failed: {text}")
    return OSError(code, f"{path}: {os.strerror(code)}" + ("" if code == errno.ENOSPC else f" ({text})"))


def write_lmdb(path: Path, shard: str, ids: Sequence[str], values: Sequence[bytes]) -> None:
    """Write encoded records to a new single-file LMDB at ``path`` in one transaction, then sync;
    a failed write (a full disk above all) raises ``OSError`` naming ``path`` (``write_error``)."""
    path = Path(path)
    table = rowtable.table_size(len(values))
    payload = sum(len(v) for v in values) + sum(len(i) for i in ids) + table
    try:
        _write_lmdb(path, shard, ids, values, payload, table)
    except lmdb.Error as exc:
        raise write_error(exc, path, payload) from exc


def _write_lmdb(path: Path, shard: str, ids: Sequence[str], values: Sequence[bytes], payload: int,
                table: int) -> None:
    """The body of ``write_lmdb``."""
    # B-tree pages, key overhead and overflow-page rounding: generous headroom, sparse on disk.
    map_size = max(1 << 20, 4 * payload + 4096 * (2 * len(values) + 64))
    # meminit=True zero-fills unused page space: the same records give byte-identical files.
    env = lmdb.open(str(path), map_size=map_size, subdir=False, lock=False, metasync=True,
                    sync=True, readahead=False, meminit=True)
    try:
        with env.begin(write=True) as txn:
            # append=True needs ascending keys: "__index__" < "i..." < "r..." < "~rows" (bytewise).
            index = {"n": len(values), "codec": CODEC_VERSION, "shard": shard}
            txn.put(INDEX_KEY, msgpack.packb(index), append=True)
            for row, record_id in sorted(enumerate(ids), key=lambda t: t[1].encode("utf-8")):
                txn.put(id_key(record_id), _ROW.pack(row), append=True)
            for row, value in enumerate(values):
                txn.put(row_key(row), value, append=True)
            if table:  # reserved now, filled below: nothing is written after it, so no page moves
                txn.put(rowtable.ROWS_KEY, bytes(table), append=True)
        env.sync(True)
    finally:
        env.close()
    if table:
        rowtable.fill_row_table(path, [len(v) for v in values])  # False: left empty, read through LMDB


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
        """The C reader's ``LmdbRows`` over this file's row table (built once per open), or None
        (``rowtable.open_row_table``)."""
        if not self._fast_built:
            self._fast_built = True
            if codec.ACCELERATED and self.n:
                self._fast = rowtable.open_row_table(self.path, self._txn().get(rowtable.ROWS_KEY), self.n)
        return self._fast

    def row_table_problem(self) -> str | None:
        """What is wrong with this file's row table, or None (``omni-data verify``)."""
        return rowtable.row_table_problem(self.path, self._txn().get(rowtable.ROWS_KEY), self.n)

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
                record = codec._fastcodec.lmdb_row(fast, row)
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
