"""LMDB shards: one single-file LMDB per shard, one checksummed value per record (``codec.py``).

Keys: ``b"r" + uint32 big-endian row`` -> record value; ``b"__index__"`` -> crc32 + msgpack
``{"n", "codec", "shard", "strings", "max_value"}``. Big-endian row keys sort in row order, so a
shard is written with ``append=True`` in one transaction. The ids live in the shard's Parquet
columns (``columns.py``) and the store's id index, not in the LMDB file.

Only py-lmdb's public API is used. Readers open read-only, ``lock=False`` (files never change
once catalogued), ``readahead=False`` (random access), lazily, once per process, and check first
that the file has the size the catalog recorded (a truncated map would be SIGBUS on first touch)
and that its two meta pages hash to the catalog's ``head_crc32``. Each read takes the value as
a view of the map (``buffers=True``), refuses a length above the shard's largest value before
touching it, then checks the value's crc32 and row (``codec.decode_record``). Every failure is a
``ValueError`` naming the file and row. Writing a shard file is ``lmdb_write.py``.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from omni_data.schema import Record
from omni_data.store.codec import CODEC_VERSION, CorruptValue, check_value, decode_record
from omni_data.store.reader import Evicted

__all__ = [
    "row_key",
    "ShardError",
    "head_crc32",
    "check_file",
    "open_environments",
    "LmdbFile",
    "LmdbShard",
]

INDEX_KEY = b"__index__"
HEAD_BYTES = 8192
"""Bytes hashed into ``head_crc32``: LMDB's two meta pages (4 KiB pages)."""
_ROW_KEY = struct.Struct(">cI")

_FORK = [0]
os.register_at_fork(after_in_child=lambda: _FORK.__setitem__(0, _FORK[0] + 1))


def row_key(row: int) -> bytes:
    return _ROW_KEY.pack(b"r", row)


class ShardError(ValueError):
    """A damaged or mismatched shard file (the message names the file and, if any, the row)."""

    runtime = True
    """The CLI exits 1 (a runtime failure, ``cli/errors.py``), not 2 (a rejected argument)."""


def head_crc32(path: Path) -> int:
    """crc32 of the first ``HEAD_BYTES`` of ``path`` (LMDB's meta pages)."""
    with open(path, "rb") as fh:
        return zlib.crc32(fh.read(HEAD_BYTES))


def check_file(path: Path, meta: dict[str, Any] | None) -> None:
    """``ShardError`` unless ``path`` exists with the catalog's size and head checksum."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise ShardError(f"{path}: file is missing") from None
    if meta is None:
        return
    if "bytes" in meta and size != meta["bytes"]:
        raise ShardError(f"{path}: {size} bytes on disk, the catalog says {meta['bytes']} (truncated or replaced)")
    if "head_crc32" in meta and head_crc32(path) != meta["head_crc32"]:
        raise ShardError(f"{path}: LMDB meta pages do not match the catalog's checksum (damaged file)")


# One environment per file per process: py-lmdb refuses to open a file twice in a process, and
# two Stores (or a Store and an id index build) on one store must both work. Keyed by (device,
# inode) so that a replaced file gets a fresh environment; closed when its last user closes.
_ENVS: dict[tuple[int, int], list] = {}
_ENVS_LOCK = threading.Lock()


def _acquire(path: Path) -> tuple[tuple[int, int], lmdb.Environment]:
    st = os.stat(path)
    key = (st.st_dev, st.st_ino)
    with _ENVS_LOCK:
        slot = _ENVS.get(key)
        if slot is not None and slot[0] != os.getpid():
            # inherited through fork: py-lmdb still lists it as open here. Closing the child's copy
            # only unmaps it in this process (read-only, no lock file); then we open our own.
            del _ENVS[key]
            slot[1].close()
            slot = None
        if slot is None:
            # map_size=1: LMDB maps exactly the pages its meta page says the file holds
            env = lmdb.open(
                str(path),
                subdir=False,
                readonly=True,
                lock=False,
                readahead=False,
                meminit=False,
                max_readers=2048,
                map_size=1,
            )
            slot = _ENVS[key] = [os.getpid(), env, 0]
        slot[2] += 1
        return key, slot[1]


def _release(key: tuple[int, int]) -> None:
    with _ENVS_LOCK:
        slot = _ENVS.get(key)
        if slot is None or slot[0] != os.getpid():
            return
        slot[2] -= 1
        if slot[2] <= 0:
            del _ENVS[key]
            slot[1].close()


def open_environments() -> int:
    """How many LMDB environments this process holds open through the store (for tests)."""
    return sum(1 for slot in _ENVS.values() if slot[0] == os.getpid())


class LmdbFile:
    """A read-only LMDB file that never changes once catalogued, opened lazily per process.

    One environment per object; each thread keeps its own read transaction; nothing open
    survives pickling or a fork. ``close()`` releases the file descriptor and the map.
    """

    kind = "LMDB file"

    def __init__(self, path: Path, meta: dict[str, Any] | None = None):
        self.path = Path(path)
        self.meta = meta
        self._env: lmdb.Environment | None = None
        self._key: tuple[int, int] | None = None
        self._pid = -1
        self._local = threading.local()

    def _open(self) -> lmdb.Environment:
        if self._env is None or self._pid != os.getpid():
            check_file(self.path, self.meta)
            try:
                self._key, self._env = _acquire(self.path)
                self._pid = os.getpid()
                info = self._env.info()
                psize = self._env.stat()["psize"]
            except lmdb.Error as exc:
                self._drop()
                raise ShardError(f"{self.path}: not a readable {self.kind} ({exc})") from None
            if (info["last_pgno"] + 1) * psize > os.stat(self.path).st_size:
                self._drop()
                raise ShardError(f"{self.path}: LMDB says {info['last_pgno'] + 1} pages, the file is shorter")
            self._local = threading.local()
        return self._env

    def _txn(self) -> lmdb.Transaction:
        """This thread's long-lived read transaction (buffers=True: values are views of the map)."""
        state = getattr(self._local, "state", None)
        if state is not None and state[1] == _FORK[0] and self._env is not None and self._pid == os.getpid():
            return state[0]
        txn = self._open().begin(buffers=True)
        self._local.state = (txn, _FORK[0])
        return txn

    def _get(self, key: bytes) -> bytes | memoryview | None:
        try:
            return self._txn().get(key)
        except lmdb.Error as exc:
            raise ShardError(f"{self.path}: LMDB error reading key {key[:40]!r} ({exc})") from None

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every key starting with ``prefix``, in key order (copies)."""
        try:
            with self._open().begin(buffers=False) as txn:
                cursor = txn.cursor()
                if not cursor.set_range(prefix):
                    return
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    yield key, value
        except lmdb.Error as exc:
            raise ShardError(f"{self.path}: LMDB error while scanning ({exc})") from None

    @property
    def is_open(self) -> bool:
        return self._env is not None and self._pid == os.getpid()

    def _drop(self) -> None:
        if self._key is not None and self._pid == os.getpid():
            _release(self._key)
        self._env, self._key, self._pid = None, None, -1
        self._local = threading.local()

    def close(self) -> None:
        if self._env is not None and self._pid == os.getpid():
            state = getattr(self._local, "state", None)
            if state is not None and state[1] == _FORK[0]:
                try:
                    state[0].abort()
                except lmdb.Error:
                    pass
        self._drop()

    def __getstate__(self) -> dict:
        return {"path": self.path, "meta": self.meta}

    def __setstate__(self, state: dict) -> None:
        self.path, self.meta = state["path"], state["meta"]
        self._env, self._key, self._pid = None, None, -1
        self._local = threading.local()


class LmdbShard(LmdbFile):
    """Read-only access to one LMDB shard of records (``record(row)``, ``records(rows)``).

    ``lock``: held while a value is fetched and copied out of the map, and by whoever closes
    the handle (a ``Store``'s LRU passes its own), so no thread reads a map being unmapped.
    """

    kind = "LMDB shard file"

    def __init__(self, path: Path, meta: dict[str, Any] | None = None, name: str | None = None, lock: Any = None):
        super().__init__(path, meta)
        self.name = name
        self.lock = lock if lock is not None else threading.Lock()
        self.evicted = False
        self._index_loaded = False
        self.n = 0
        self.strings: list[str] = []
        self.max_value = 0
        self._load_index()

    def _load_index(self) -> None:
        raw = self._get(INDEX_KEY)
        if raw is None:
            self.close()
            raise ShardError(f"{self.path}: not an Omni LMDB shard (no {INDEX_KEY!r} key)")
        raw = bytes(raw)
        if len(raw) < 5 or zlib.crc32(raw[4:]) != int.from_bytes(raw[:4], "little"):
            self.close()
            try:
                old = msgpack.unpackb(raw)
            except Exception:
                old = None
            if isinstance(old, dict) and old.get("codec", 1) in (1, 2):
                raise ShardError(
                    f"{self.path}: an LMDB shard of store format 1; convert the store with "
                    "`omni-data convert-store OLD NEW`"
                )
            raise ShardError(f"{self.path}: shard index key is damaged (checksum mismatch)")
        try:
            index = msgpack.unpackb(raw[4:])
            n, codec, strings, max_value = (
                int(index["n"]),
                index["codec"],
                list(index["strings"]),
                int(index["max_value"]),
            )
        except Exception as exc:
            self.close()
            raise ShardError(f"{self.path}: shard index key is undecodable ({exc})") from None
        if codec != CODEC_VERSION:
            self.close()
            raise ShardError(f"{self.path}: record codec {codec!r}, this Omni reads {CODEC_VERSION}")
        self.n, self.strings, self.max_value = n, strings, max_value

    def __len__(self) -> int:
        return self.n

    def _where(self, row: int) -> str:
        return f"{self.path}: row {row}"

    def raw(self, row: int) -> bytes:
        """The encoded value at ``row``, copied out of the map after its length is checked
        against the shard's largest value (a damaged length is refused before it is touched)."""
        if not 0 <= row < self.n:
            raise IndexError(f"{self.path}: row {row} out of range 0..{self.n - 1}")
        with self.lock:
            if self.evicted:
                raise Evicted()
            state = getattr(self._local, "state", None)
            try:
                if state is None or state[1] != _FORK[0]:
                    value = self._txn().get(_ROW_KEY.pack(b"r", row))
                else:
                    value = state[0].get(_ROW_KEY.pack(b"r", row))
            except lmdb.Error as exc:
                raise ShardError(f"{self._where(row)}: LMDB error ({exc}): damaged file") from None
            if value is None:
                raise ShardError(f"{self._where(row)}: missing although the shard holds {self.n} rows (damaged file)")
            if len(value) > self.max_value:
                raise ShardError(
                    f"{self._where(row)}: value of {len(value)} bytes, above the shard's largest "
                    f"({self.max_value}): damaged file"
                )
            return bytes(value)

    def record(self, row: int) -> Record:
        """The decoded, checked record at ``row``."""
        try:
            return decode_record(self.raw(row), row, self.strings)
        except CorruptValue as exc:
            raise ShardError(f"{self._where(row)}: {exc}") from None

    def records(self, rows: Sequence[int]) -> list[Record]:
        """The decoded records at ``rows``, in that order (``Store.get_many``)."""
        record = self.record
        return [record(row) for row in rows]

    def iter_records(self) -> Iterator[Record]:
        """Every record in row order (one cursor scan, each value checked)."""
        row = 0
        steps = self.scan(b"r")
        while True:
            with self.lock:
                if self.evicted:
                    raise ShardError(
                        f"{self.path}: closed while iterated (more shards read at once than the Store's max_open)"
                    )
                item = next(steps, None)
            if item is None:
                break
            key, value = item
            if key != row_key(row):
                raise ShardError(f"{self._where(row)}: row key missing or out of order (damaged file)")
            try:
                yield decode_record(value, row, self.strings)
            except CorruptValue as exc:
                raise ShardError(f"{self._where(row)}: {exc}") from None
            row += 1
        if row != self.n:
            raise ShardError(f"{self.path}: {row} rows found, the shard index says {self.n} (damaged file)")

    def check_values(self) -> list[str]:
        """Problems of every value (checksum, row, key order) for ``verify``: empty when sound."""
        problems: list[str] = []
        row = 0
        try:
            for key, value in self.scan(b"r"):
                if key != row_key(row):
                    problems.append(f"row {row}: key {key!r} out of order")
                    break
                try:
                    check_value(value)
                except CorruptValue as exc:
                    problems.append(f"row {row}: {exc}")
                row += 1
        except ShardError as exc:
            problems.append(str(exc))
        if row != self.n and not problems:
            problems.append(f"{row} rows found, the shard index says {self.n}")
        return problems

    def __getstate__(self) -> dict:
        return {
            **super().__getstate__(),
            "name": self.name,
            "n": self.n,
            "strings": self.strings,
            "max_value": self.max_value,
        }

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.name, self.n, self.strings, self.max_value = (
            state["name"],
            state["n"],
            state["strings"],
            state["max_value"],
        )
        self.lock, self.evicted = threading.Lock(), False
