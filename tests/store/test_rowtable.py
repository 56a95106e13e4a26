"""The row table of an LMDB shard (``rowtable.py``): where each row's node is, read back from the
raw file the way mdb.c lays it out, checked, and never trusted by the readers."""
from __future__ import annotations

import lmdb
import pytest

from omni_data.store.codec import encode_record
from omni_data.store.lmdb import LmdbShard, write_lmdb
from omni_data.store.testing import assert_same_records, emt_records, swap_row_table_entries


def _big_and_small_records() -> list:
    """EMT records, some padded with per-atom magmoms and tags past LMDB's inline limit (about
    2 KB on 4 KiB pages), so the shard holds values both in the node and on overflow pages."""
    import numpy as np

    records = emt_records(10, seed=11)
    for k, record in enumerate(records):
        if k % 3 == 0:  # 96 atoms: ~7 KB, an overflow value
            reps = 96 // len(record.numbers) + 1
            record.numbers = np.tile(record.numbers, reps)[:96]
            record.positions = np.tile(record.positions, (reps, 1))[:96] + np.arange(96)[:, None] * 0.01
            record.forces = np.tile(record.forces, (reps, 1))[:96]
            record.magmoms = np.linspace(-1, 1, 96)
    return records


def _file_row(data: bytes, entry: int, row: int, psize: int) -> tuple[int, bytes]:
    """(node flags, value) of ``row`` read from the raw file the way mdb.c lays it out, one
    struct at a time: MDB_node is lo, hi, flags, ksize (uint16), key, then the value or, with
    F_BIGDATA, the number of its first overflow page (whose data starts 16 bytes in)."""
    import struct

    node = entry & ((1 << 40) - 1)
    lo, hi, flags, ksize = struct.unpack_from("<HHHH", data, node)
    assert ksize == 9 and data[node + 8:node + 17] == b"r" + struct.pack(">Q", row)
    length = lo | hi << 16
    assert entry >> 40 == min(length, (1 << 24) - 1)
    if flags == 0:
        return flags, data[node + 17:node + 17 + length]
    assert flags == 1
    (pgno,) = struct.unpack_from("<Q", data, node + 17)
    page_no, _, page_flags = struct.unpack_from("<QHH", data, pgno * psize)
    assert page_no == pgno and page_flags & 4  # P_OVERFLOW
    return flags, data[pgno * psize + 16:pgno * psize + 16 + length]


def test_row_table_leads_to_every_row_value(tmp_path):
    import struct

    from omni_data.store.lmdb import row_key
    from omni_data.store.rowtable import ROWS_KEY, ROWS_MAGIC

    records = _big_and_small_records()
    values = [encode_record(r) for r in records]
    path = tmp_path / "s.lmdb"
    write_lmdb(path, "s", [r.id for r in records], values)
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        raw = txn.get(ROWS_KEY)
        stored = [txn.get(row_key(i)) for i in range(len(values))]
    env.close()
    assert stored == values  # the table changes no record
    magic, n, psize, at = struct.unpack_from("<8sQQQ", raw)
    data = path.read_bytes()
    assert (magic, n) == (ROWS_MAGIC, len(values)) and data[at:at + len(raw)] == raw
    entries = struct.unpack_from(f"<{n}Q", raw, 32)
    seen = [_file_row(data, entries[row], row, psize) for row in range(n)]
    assert [value for _, value in seen] == values
    assert {flags for flags, _ in seen} == {0, 1}  # values in the node and on overflow pages
    shard = LmdbShard(path)
    try:
        assert shard.row_table_problem() is None
        assert_same_records(records, [shard.record(i) for i in range(n)])
    finally:
        shard.close()


def test_same_records_give_byte_identical_files(tmp_path, monkeypatch):
    """Twice, and once more without the C extension (an install without a compiler finds the
    row keys' addresses through numpy): the same bytes, row table included."""
    from omni_data.store import rowtable

    records = _big_and_small_records()
    for name in ("a", "b", "python"):
        if name == "python":
            monkeypatch.setattr(rowtable, "_C", None)
        write_lmdb(tmp_path / f"{name}.lmdb", "s", [r.id for r in records], [encode_record(r) for r in records])
    first = (tmp_path / "a.lmdb").read_bytes()
    assert first == (tmp_path / "b.lmdb").read_bytes() == (tmp_path / "python.lmdb").read_bytes()
    assert b"OMNIROW1" in first


def test_a_wrong_row_table_is_reported_and_never_gives_a_wrong_record(tmp_path):
    records = _big_and_small_records()
    path = tmp_path / "s.lmdb"
    write_lmdb(path, "s", [r.id for r in records], [encode_record(r) for r in records])
    swap_row_table_entries(path, 1, 3)  # row 1's entry leads to row 3's node (an overflow value) and back
    shard = LmdbShard(path)
    try:
        assert shard.row_table_problem() == "row table: 2 of 10 rows do not lead to their record (first: row 1)"
        assert_same_records(records, [shard.record(i) for i in range(10)])  # the key check: read through LMDB
        assert_same_records(records, shard.records(list(range(10))))
    finally:
        shard.close()


def test_shard_without_a_row_table_reads_through_lmdb(tmp_path, monkeypatch):
    from omni_data.store import rowtable

    records = _big_and_small_records()
    monkeypatch.setattr(rowtable, "fill_row_table", lambda path, sizes: False)  # reserved, left zero
    path = tmp_path / "s.lmdb"
    write_lmdb(path, "s", [r.id for r in records], [encode_record(r) for r in records])
    shard = LmdbShard(path)
    try:
        assert shard.rows() is None and shard.row_table_problem() is None
        assert_same_records(records, [shard.record(i) for i in range(10)])
    finally:
        shard.close()


def test_a_shard_with_a_row_table_holds_one_mapping(tmp_path):
    """Opened, a shard with a row table keeps only the table's mapping of its file (a store of
    24,200 shards would otherwise hold two per shard, near Linux's 65,530 default); a read
    that needs LMDB opens the environment again."""
    from omni_data.store import codec
    from omni_data.store import lmdb as lmdb_shards

    if not codec.ACCELERATED:
        pytest.skip("the row table is read by the C decoder")
    records = emt_records(6, seed=12)
    path = tmp_path / "s.lmdb"
    write_lmdb(path, "s", [r.id for r in records], [encode_record(r) for r in records])
    before = len(lmdb_shards._ENVS)
    shard = LmdbShard(path)
    try:
        assert shard._env is None and len(lmdb_shards._ENVS) == before and shard.rows() is not None
        assert_same_records(records, [shard.record(i) for i in range(6)])
        assert shard._env is None
        assert shard.find(records[2].id) == 2 and shard._env is not None  # the id keys: through LMDB
        assert_same_records(records[:2], shard.records([0, 1]))
    finally:
        shard.close()
    assert len(lmdb_shards._ENVS) == before
