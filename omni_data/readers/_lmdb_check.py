"""Refuse a truncated or non-LMDB source file before ``lmdb`` maps it.

Why: LMDB maps the whole file and reads pages by number; a page past the end of a shorter file
(a partial download of an OC22/ODAC23 ``.lmdb`` or an ``.aselmdb``) kills the process with
SIGBUS, which no ``try`` can catch. So the two meta pages are read here with plain file reads
and the file size is compared with what they say, before anything is mapped.

On-disk layout (liblmdb ``mdb.c``, 64-bit little-endian builds): page 0 and page 1 each start
with an ``MDB_page`` header (``mp_pgno`` u64, ``mp_pad`` u16, ``mp_flags`` u16, ``mp_lower``
u16, ``mp_upper`` u16: 16 bytes, ``PAGEHDRSZ``), then an ``MDB_meta``: ``mm_magic`` u32
(0xBEEFC0DE), ``mm_version`` u32 (1), ``mm_address`` u64, ``mm_mapsize`` u64, two ``MDB_db``
(free pages, main; each ``md_pad`` u32 (the page size, for the free DB), ``md_flags`` u16,
``md_depth`` u16, branch/leaf/overflow page counts, entries and ``md_root``: u64 each), then
``mm_last_pg`` u64 and ``mm_txnid`` u64. Page 1 sits at the page size read from page 0; the
meta with the larger txnid is current (``mdb_env_read_header``, ``mdb_env_pick_meta``).

A file shorter than ``(mm_last_pg + 1) * page size`` is refused with both sizes. (LMDB notes the
file "may be shorter if the freeDB lists the final pages"; such a file is refused too: a partial
download can also end on free pages, and the user must learn the copy is incomplete. A compacting
copy, ``mdb_copy -c`` or ``lmdb.Environment.copy(..., compact=True)``, rewrites it whole.)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from omni_data.readers import ReaderError

MAGIC = 0xBEEFC0DE
DATA_VERSION = 1
PAGEHDRSZ = 16
P_META = 0x08
_HEADER = struct.Struct("<QHHHH")  # mp_pgno, mp_pad, mp_flags, mp_lower, mp_upper
_DB = "IHHQQQQQ"  # md_pad, md_flags, md_depth, branch, leaf, overflow pages, entries, md_root
_META = struct.Struct("<IIQQ" + _DB + _DB + "QQ")  # 136 bytes, the same as sizeof(MDB_meta)


@dataclass(frozen=True)
class LmdbMeta:
    """The current meta page of an LMDB file."""

    page_size: int
    last_page: int
    txnid: int

    @property
    def needed_bytes(self) -> int:
        """The size the file must have at least: pages 0..last_page."""
        return (self.last_page + 1) * self.page_size


def data_file(path: str | Path) -> Path:
    """The file LMDB maps: ``path`` itself, or ``path/data.mdb`` for a directory environment."""
    p = Path(path)
    return p / "data.mdb" if p.is_dir() else p


def _meta_at(fh: BinaryIO, offset: int, which: int, path: Path) -> LmdbMeta:
    fh.seek(offset)
    raw = fh.read(PAGEHDRSZ + _META.size)
    if len(raw) < PAGEHDRSZ + _META.size:
        raise ReaderError(
            f"{path}: not an LMDB file (too short for meta page {which}: {len(raw)} bytes at offset {offset})"
        )
    _, _, flags, _, _ = _HEADER.unpack_from(raw)
    fields = _META.unpack_from(raw, PAGEHDRSZ)
    magic, version = fields[0], fields[1]
    if magic == struct.unpack(">I", struct.pack("<I", MAGIC))[0]:
        raise ReaderError(f"{path}: LMDB file written on a big-endian machine; it cannot be read here")
    if magic != MAGIC or not flags & P_META:
        raise ReaderError(
            f"{path}: not an LMDB file (meta page {which} has magic {magic:#010x}, expected {MAGIC:#010x})"
        )
    if version != DATA_VERSION:
        raise ReaderError(f"{path}: LMDB data version {version} in meta page {which}, expected {DATA_VERSION}")
    psize = fields[4]
    last_page, txnid = fields[-2], fields[-1]
    if psize < 512 or psize > 65536 or psize & (psize - 1):
        raise ReaderError(f"{path}: damaged LMDB meta page {which} (page size {psize})")
    if last_page < 1 or last_page >= 2**52 // psize:
        raise ReaderError(f"{path}: damaged LMDB meta page {which} (last page {last_page})")
    return LmdbMeta(psize, last_page, txnid)


def _truncated(path: Path, size: int, meta: LmdbMeta) -> ReaderError:
    return ReaderError(
        f"{path}: truncated LMDB file (a partial download?): it has {size} bytes but its meta page "
        f"(txn {meta.txnid}) needs {meta.needed_bytes} bytes ({meta.last_page + 1} pages of "
        f"{meta.page_size}); refusing to map it"
    )


def read_meta(path: str | Path) -> LmdbMeta:
    """The current (larger txnid) of the two meta pages; ReaderError naming the file if garbage,
    or if the file is too short to hold both."""
    p = data_file(path)
    try:
        with open(p, "rb") as fh:
            size = p.stat().st_size
            first = _meta_at(fh, 0, 0, p)
            if size < first.page_size + PAGEHDRSZ + _META.size:
                raise _truncated(p, size, first)
            second = _meta_at(fh, first.page_size, 1, p)
    except OSError as exc:
        raise ReaderError(f"{p}: cannot read the LMDB file ({exc})") from exc
    if first.page_size != second.page_size:
        raise ReaderError(f"{p}: damaged LMDB meta pages (page sizes {first.page_size} and {second.page_size})")
    return second if second.txnid > first.txnid else first


def check_lmdb_file(path: str | Path) -> LmdbMeta:
    """Raise ReaderError naming the file unless it is an LMDB file whose pages are all on disk.

    Call before ``lmdb.open`` on any LMDB file Omni did not write: mapping a truncated file
    crashes the process with SIGBUS on the first read past its end."""
    p = data_file(path)
    meta = read_meta(p)
    size = p.stat().st_size
    if size < meta.needed_bytes:
        raise _truncated(p, size, meta)
    return meta


def damaged(path: str | Path, exc: Exception, near: str = "") -> ReaderError:
    """The ReaderError for an ``lmdb.Error`` (MDB_CORRUPTED, MDB_PAGE_NOTFOUND, ...) on ``path``."""
    where = f" {near}" if near else ""
    return ReaderError(f"{path}: damaged LMDB file{where} ({type(exc).__name__}: {exc})")


@contextmanager
def lmdb_errors(path: str | Path) -> Iterator[None]:
    """Turn an ``lmdb.Error`` raised inside the block into a ReaderError naming the file."""
    import lmdb

    try:
        yield
    except lmdb.Error as exc:
        raise damaged(path, exc) from exc
