"""LMDB shard files: row reads, checked values and clear errors naming the file and row."""

from __future__ import annotations

import lmdb
import msgpack
import pytest

from omni_data.store.codec import encode_record
from omni_data.store.lmdb import INDEX_KEY, LmdbShard, ShardError, row_key
from omni_data.store.lmdb_write import pack_index, write_lmdb
from omni_data.store.testing import assert_same_records, emt_records


def _write(path, records):
    strings: dict[str, int] = {}
    write_lmdb(path, path.stem, [encode_record(r, row, strings) for row, r in enumerate(records)], list(strings))


def test_record_and_records_read_rows(tmp_path):
    records = emt_records(6, seed=7)
    path = tmp_path / "s.lmdb"
    _write(path, records)
    shard = LmdbShard(path)
    try:
        assert len(shard) == 6
        assert_same_records(records, [shard.record(i) for i in range(6)])
        assert_same_records([records[4], records[0], records[4]], shard.records([4, 0, 4]))
        assert_same_records(records, list(shard.iter_records()))
        assert shard.check_values() == []
        with pytest.raises(IndexError, match=r"s\.lmdb: row 6 out of range"):
            shard.record(6)
        with pytest.raises(IndexError, match="row -1 out of range"):
            shard.record(-1)
    finally:
        shard.close()


def test_a_value_under_another_rows_key_is_an_error_naming_file_and_row(tmp_path):
    records = emt_records(2)
    path = tmp_path / "bad.lmdb"
    values = [encode_record(records[0], 0), encode_record(records[1], 0)]  # row 1 holds row 0's value
    write_lmdb(path, "bad", values, [])
    shard = LmdbShard(path)
    try:
        assert shard.record(0).id == records[0].id
        with pytest.raises(ValueError, match=r"bad\.lmdb: row 1: value belongs to row 0"):
            shard.record(1)
        assert "row 1: value belongs" not in " ".join(shard.check_values())  # verify checks crc, Store checks row
    finally:
        shard.close()


def test_shard_from_a_newer_codec_is_refused(tmp_path):
    path = tmp_path / "new.lmdb"
    env = lmdb.open(str(path), subdir=False, map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(INDEX_KEY, pack_index({"n": 0, "codec": 9, "shard": "new", "strings": [], "max_value": 0}))
    env.close()
    with pytest.raises(ValueError, match="record codec 9, this Omni reads 3"):
        LmdbShard(path)
    # the refused file was closed again: this process can open it
    lmdb.open(str(path), subdir=False, readonly=True, lock=False).close()


def test_store_format_1_shard_says_how_to_convert(tmp_path):
    path = tmp_path / "old.lmdb"
    env = lmdb.open(str(path), subdir=False, map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(INDEX_KEY, msgpack.packb({"n": 0, "codec": 2, "shard": "old"}))
    env.close()
    with pytest.raises(ShardError, match="store format 1; convert the store with `omni-data convert-store"):
        LmdbShard(path)


def test_size_and_head_checks_before_mapping(tmp_path):
    from omni_data.store.lmdb import head_crc32

    path = tmp_path / "s.lmdb"
    _write(path, emt_records(3))
    meta = {"bytes": path.stat().st_size, "head_crc32": head_crc32(path)}
    LmdbShard(path, meta).close()
    data = path.read_bytes()
    path.write_bytes(data[:-4096])  # one page short: LMDB would map past the end (SIGBUS)
    with pytest.raises(ShardError, match=r"s\.lmdb: \d+ bytes on disk, the catalog says"):
        LmdbShard(path, meta)
    with pytest.raises(ShardError, match="the file is shorter"):
        LmdbShard(path, None)  # without a catalog entry: LMDB's own page count is checked
    damaged = bytearray(data)
    damaged[100] ^= 0x40
    path.write_bytes(bytes(damaged))
    with pytest.raises(ShardError, match="meta pages do not match"):
        LmdbShard(path, meta)


def test_row_keys_are_compact():
    assert row_key(5) == b"r\x00\x00\x00\x05"
