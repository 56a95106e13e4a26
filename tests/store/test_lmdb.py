"""LMDB shard files: row reads and clear errors for values or files it cannot read."""
from __future__ import annotations

import lmdb
import msgpack
import pytest

from omni_data.store.codec import encode_record
from omni_data.store.lmdb import INDEX_KEY, LmdbShard, write_lmdb
from omni_data.store.testing import assert_same_records, emt_records


def test_record_and_records_read_rows(tmp_path):
    records = emt_records(6, seed=7)
    path = tmp_path / "s.lmdb"
    write_lmdb(path, "s", [r.id for r in records], [encode_record(r) for r in records])
    shard = LmdbShard(path)
    try:
        assert len(shard) == 6
        assert_same_records(records, [shard.record(i) for i in range(6)])
        assert_same_records([records[4], records[0], records[4]], [shard.record(i) for i in (4, 0, 4)])
        assert shard.find(records[3].id) == 3 and shard.find("nope") is None
        with pytest.raises(IndexError, match=r"s\.lmdb: row 6 out of range"):
            shard.record(6)
        with pytest.raises(IndexError, match="row -1 out of range"):
            shard.record(-1)
    finally:
        shard.close()


def test_undecodable_value_names_file_and_row(tmp_path):
    good = emt_records(1)[0]
    doc = msgpack.unpackb(encode_record(good))
    doc[7] = doc[7][:-8]  # array buffer one float short
    path = tmp_path / "bad.lmdb"
    write_lmdb(path, "bad", [good.id, "x:1"], [encode_record(good), msgpack.packb(doc, use_bin_type=True)])
    shard = LmdbShard(path)
    try:
        assert shard.record(0).id == good.id
        with pytest.raises(ValueError, match=r"bad\.lmdb: row 1: undecodable record value"):
            shard.record(1)
    finally:
        shard.close()


def test_shard_from_a_newer_codec_is_refused(tmp_path):
    path = tmp_path / "new.lmdb"
    env = lmdb.open(str(path), subdir=False, map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(INDEX_KEY, msgpack.packb({"n": 0, "codec": 9, "shard": "new"}))
    env.close()
    with pytest.raises(ValueError, match="record codec 9 is not one of"):
        LmdbShard(path)
    # the refused file was closed again: this process can open it
    lmdb.open(str(path), subdir=False, readonly=True, lock=False).close()
