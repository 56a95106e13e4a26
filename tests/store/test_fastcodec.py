"""The C record decoder (``omni_data/store/_fastcodec.c``) against the pure-Python one.

The C decoder must give exactly the Python decoder's Record for every well-formed version-2
value and answer NotImplemented (never a wrong Record, never a crash) for anything else, which
the Python path then decodes or rejects with its own error.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import subprocess
import sys
from dataclasses import fields

import msgpack
import numpy as np
import pytest

from omni_data.schema import PackedMetadata, Record
from omni_data.store import codec
from omni_data.store.codec import decode_record, decode_record_py, encode_record
from omni_data.store.testing import assert_same_records, bare_record, emt_records, record_differences

pytestmark = pytest.mark.skipif(not codec.ACCELERATED, reason="C decoder not built (no compiler at install)")

ARRAYS = ("numbers", "positions", "cell", "pbc", "forces", "stress", "magmoms", "fixed", "tags")


def varied_records(count: int, seed: int = 0, min_atoms: int = 0) -> list[Record]:
    """Every optional field on and off, molecules and crystals, 0-40 atoms (a store holds at
    least 1), odd metadata."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        n = int(rng.integers(min_atoms, 41))
        on = rng.random(9) < 0.5
        periodic = bool(on[0])
        out.append(Record(
            numbers=rng.integers(1, 119, n), positions=rng.normal(0, 5, (n, 3)),
            id=f"set{i % 3}:{i}-ü", dataset=f"set{i % 3}", task=["pbe", "r2scan", "ωb97m"][i % 3],
            cell=rng.normal(0, 5, (3, 3)) if periodic else None,
            pbc=np.array([periodic, periodic, bool(on[1]) and periodic]),
            energy=float(rng.normal(-3 * n, 1)) if on[2] else None,
            energy_kind=["total", "free", "referenced"][i % 3],
            forces=rng.normal(0, 1, (n, 3)) if on[3] else None, stress=rng.normal(0, 0.01, 6) if on[4] else None,
            magmoms=rng.normal(0, 1, n) if on[5] else None, charge=float(rng.integers(-2, 3)) if on[6] else None,
            spin=int(rng.integers(1, 5)) if on[7] else None,
            fixed=rng.random(n) < 0.3 if on[8] else None, tags=rng.integers(0, 3, n) if i % 2 else None,
            weight=float(rng.uniform(0, 3)), source_file=f"/data/file{i % 2}.extxyz", source_index=int(rng.integers(-1, 2**40)),
            metadata={} if i % 4 == 0 else {"sid": f"s{i}", "nested": {"a": [1, 2.5, None, True]}, "n": -i},
        ).normalized())
    return out


def assert_identical(c: Record, py: Record) -> None:
    assert list(vars(c)) == list(vars(py))  # same fields, same order (Record(**vars(r)) works)
    assert record_differences(c, py) == []
    for name in ARRAYS:
        a, b = getattr(c, name), getattr(py, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
            assert a.flags.writeable and a.flags.c_contiguous and a.flags.aligned, name
    for name in ("id", "dataset", "task", "energy", "energy_kind", "charge", "spin", "weight", "source_file",
                 "source_index", "metadata"):
        assert getattr(c, name) == getattr(py, name) and type(getattr(c, name)) is type(getattr(py, name)), name


def test_same_records_as_the_python_decoder():
    records = varied_records(300) + emt_records(12, seed=3) + [bare_record()]
    for record in records:
        value = encode_record(record)
        c = codec.decode_c(value)
        assert c is not NotImplemented
        assert_identical(c, decode_record_py(value))
    assert_same_records(records, [decode_record(encode_record(r)) for r in records])


def test_memoryview_values_decode_too():
    value = encode_record(emt_records(1)[0])
    assert_identical(codec.decode_c(memoryview(value)), decode_record_py(value))


def test_arrays_own_their_memory():
    value = encode_record(emt_records(1)[0])
    a, b = codec.decode_c(value), codec.decode_c(value)
    x0 = b.positions[0, 0]
    a.positions[0, 0] = x0 + 1.0
    a.pbc[0] = not a.pbc[0]
    a.numbers[:] = 7
    assert b.positions[0, 0] == x0 and b.pbc[0] != a.pbc[0] and b.numbers[0] != 7
    assert not np.shares_memory(a.positions, b.positions)
    del a
    assert_identical(b, decode_record_py(value))  # b unaffected by a's mutation and release


def test_metadata_is_unpacked_on_first_access():
    record = varied_records(2)[1]
    assert record.metadata
    r = codec.decode_c(encode_record(record))
    assert type(vars(r)["metadata"]) is PackedMetadata  # still packed
    assert msgpack.unpackb(vars(r)["metadata"]) == record.metadata
    assert r.metadata == record.metadata and type(vars(r)["metadata"]) is dict
    assert r.metadata is r.metadata  # unpacked once, then kept
    r.metadata["added"] = 1
    assert r.metadata["added"] == 1


def test_packed_metadata_survives_copy_pickle_replace_and_vars():
    record = varied_records(2)[1]
    value = encode_record(record)
    make = lambda: codec.decode_c(value)  # noqa: E731  a fresh, still-packed record each time
    assert pickle.loads(pickle.dumps(make())).metadata == record.metadata
    assert copy.deepcopy(make()).metadata == record.metadata
    assert dataclasses.replace(make(), id="x:1").metadata == record.metadata
    assert Record(**vars(make())).metadata == record.metadata
    assert dataclasses.asdict(make())["metadata"] == record.metadata
    assert repr(record.metadata) in repr(make())
    r = make()
    r.metadata = {"replaced": True}
    assert r.metadata == {"replaced": True}


def test_empty_metadata_is_a_fresh_dict():
    value = encode_record(bare_record())
    a, b = codec.decode_c(value), codec.decode_c(value)
    assert a.metadata == {} and type(vars(a)["metadata"]) is dict and a.metadata is not b.metadata


def test_undecodable_packed_metadata_names_the_problem():
    r = codec.decode_c(encode_record(varied_records(2)[1]))
    vars(r)["metadata"] = PackedMetadata(b"\xc1")  # never used in msgpack
    with pytest.raises(ValueError, match="metadata could not be unpacked"):
        r.metadata


def test_other_versions_and_shapes_go_to_python():
    record = emt_records(1)[0]
    doc = msgpack.unpackb(encode_record(record))
    v1 = msgpack.packb({"v": 1})
    odd = [
        v1,
        msgpack.packb([3] + doc[1:], use_bin_type=True),  # another version
        msgpack.packb(doc + [None], use_bin_type=True),  # 17 elements
        msgpack.packb(doc[:7] + [doc[7].hex()] + doc[8:], use_bin_type=True),  # buffer as str
        msgpack.packb(doc[:6] + [9] + doc[7:], use_bin_type=True),  # pbc bits out of range
        msgpack.packb(doc[:6] + [-1] + doc[7:], use_bin_type=True),  # Python indexes _PBC[-1]
        msgpack.packb(doc[:15] + [b"raw"], use_bin_type=True),  # metadata not a map
        msgpack.packb(doc[:15] + [[1, 2]], use_bin_type=True),
        msgpack.packb(doc[:4] + [-1] + doc[5:], use_bin_type=True),  # negative n
    ]
    for value in odd:
        assert codec.decode_c(value) is NotImplemented
    # the Python path still decodes what it can: same answers as before the C decoder existed
    assert decode_record(odd[5]).pbc.tolist() == [True, True, True]
    assert decode_record(odd[6]).metadata == b"raw"  # plain bytes someone stored stay bytes
    with pytest.raises(ValueError):
        decode_record(odd[1])
    # scalars of another msgpack type than encode_record writes come back as Python's do
    int_energy = msgpack.packb(doc[:8] + [7] + doc[9:], use_bin_type=True)
    assert_identical(codec.decode_c(int_energy), decode_record_py(int_energy))
    assert type(codec.decode_c(int_energy).energy) is int


def _python_outcome(value: bytes):
    try:
        return decode_record_py(value)
    except Exception as exc:  # noqa: BLE001 - any error: C must not return a Record here
        return exc


def test_mutated_values_never_give_a_wrong_record():
    """Every truncation and 3,000 random byte changes: C returns NotImplemented or exactly the
    Record the Python decoder returns (and never crashes the process)."""
    rng = np.random.default_rng(11)
    values = [encode_record(r) for r in varied_records(6, seed=5)]
    mutated = [v[:k] for v in values for k in range(len(v))]
    for _ in range(3000):
        v = bytearray(values[int(rng.integers(len(values)))])
        for _ in range(int(rng.integers(1, 4))):
            v[int(rng.integers(len(v)))] = int(rng.integers(256))
        mutated.append(bytes(v))
    accepted = lazy_errors = 0
    for value in mutated:
        c = codec.decode_c(value)
        if c is NotImplemented:
            continue
        py = _python_outcome(value)
        try:
            c.metadata
        except ValueError:
            # metadata is unpacked on first access, so a broken metadata map is an error then
            # (it names the record), where the Python decoder refused the whole value
            assert isinstance(py, (ValueError, TypeError)), (value, py)
            lazy_errors += 1
            continue
        assert isinstance(py, Record), (value, py)
        assert_identical(c, py)
        accepted += 1
    assert accepted > 100  # flips inside float buffers still decode: the comparison is exercised


def test_read_row_through_a_store(tmp_path, lmdb_reads):
    from omni_data.store import Store, write_shard

    records = varied_records(40, seed=8, min_atoms=1)
    write_shard(tmp_path / "store", "s0", records)
    store = Store(tmp_path / "store")
    assert_same_records(records, [store[i] for i in range(len(records))])
    shard = store._handle(0)
    assert (shard.rows() is None) == (lmdb_reads == "B-tree")
    get = shard._txn().get
    assert codec.read_row_c(get, 40) is None  # no such row key
    assert_identical(codec.read_row_c(get, 3), decode_record_py(shard.raw(3)))
    with pytest.raises(OverflowError):
        codec.read_row_c(get, -1)


def test_environment_variable_turns_it_off():
    code = "from omni_data.store import codec; print(codec.ACCELERATED, codec.decode_c)"
    env = {**os.environ, "OMNI_PURE_PYTHON_CODEC": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "None"]


def test_record_fields_are_what_the_c_decoder_fills():
    # _fastcodec.c writes these keys in this order; codec.py disables it if Record changes.
    assert tuple(f.name for f in fields(Record)) == codec._ORDER


def test_read_rows_and_get_many_across_shards(tmp_path, monkeypatch, lmdb_reads):
    from omni_data.store import Store, write_shard

    records = varied_records(90, seed=9, min_atoms=1)
    for k in range(3):
        write_shard(tmp_path / "store", f"s{k}", records[30 * k:30 * (k + 1)])
    store = Store(tmp_path / "store")
    idx = np.random.default_rng(4).integers(-90, 90, 200)  # three shards, repeats, negatives
    fast = store.get_many(idx)
    monkeypatch.setattr(codec, "read_rows_c", None)
    monkeypatch.setattr(codec, "read_row_c", None)
    slow = store.get_many(idx)
    assert_same_records([records[i] for i in idx.tolist()], fast)
    for a, b in zip(fast, slow):
        assert_identical(a, b)
    shard = store._handle(1)
    out = codec_read_rows(shard, [0, 29, 30, 5])
    assert out[2] is None and out[0] is not NotImplemented  # row 30 is past the shard's end
    with pytest.raises(IndexError, match="row 30 out of range"):
        shard.records([0, 30])
    from omni_data.store import _fastcodec

    two = [store._handle(0).getter(), store._handle(2).getter()]
    assert [r.id for r in _fastcodec.read_rows(two, [3, 4])] == [records[3].id, records[64].id]
    with pytest.raises(ValueError, match="one get per row"):
        _fastcodec.read_rows(two, [1, 2, 3])


def codec_read_rows(shard, rows):
    from omni_data.store import _fastcodec

    return _fastcodec.read_rows(shard._txn().get, rows)


def test_torch_dataloader_batches_through_getitems(tmp_path, optional):
    torch = optional("torch", "model")
    from omni_data.store import Store, write_shard

    records = varied_records(20, seed=2, min_atoms=1)
    write_shard(tmp_path / "store", "s0", records)
    store = Store(tmp_path / "store")
    calls = []
    original = store.get_many
    store.get_many = lambda idx: calls.append(list(idx)) or original(idx)  # type: ignore[method-assign]
    loader = torch.utils.data.DataLoader(store, batch_size=8, collate_fn=lambda batch: batch)
    batches = list(loader)
    assert [len(b) for b in batches] == [8, 8, 4] and calls == [list(range(0, 8)), list(range(8, 16)), list(range(16, 20))]
    assert_same_records(records, [r for b in batches for r in b])


def test_store_index_in_c_gives_the_python_path_records(tmp_path, monkeypatch, lmdb_reads):
    """``store[i]`` runs in C (``StoreIndex``) for an int index on an open LMDB shard and falls
    back to ``Store._getitem`` for everything else; both give the same records and errors."""
    import threading

    from omni_data.store import Store, write_shard
    from omni_data.store.reader import Store as StoreClass

    records = varied_records(60, seed=12, min_atoms=1)
    for k in range(3):
        write_shard(tmp_path / "store", f"s{k}", records[20 * k:20 * (k + 1)])
    store = Store(tmp_path / "store")
    assert type(store).__getitem__ is codec._fastcodec.StoreIndex.__getitem__
    slow: list[object] = []
    original = StoreClass._getitem
    monkeypatch.setattr(StoreClass, "_getitem", lambda self, i: slow.append(i) or original(self, i))
    got = [store[i] for i in range(60)] + [store[-1], store[-60], store[np.int64(7)], store[True]]
    assert slow == [0, 20, 40, np.int64(7), True]  # first read of each shard opens it; non-int types
    assert_same_records(records + [records[-1], records[0], records[7], records[1]], got)
    for bad, error in ((60, IndexError), (-61, IndexError), (1.0, TypeError), ("1", TypeError), (2**70, IndexError)):
        with pytest.raises(error):
            store[bad]
    arrow = Store(tmp_path / "store", backend="arrow")  # Arrow shards: their ArrowRows (tests below)
    assert_same_records(records[:5], [arrow[i] for i in range(5)])
    results: dict[int, list[str]] = {}

    def read(t: int) -> None:
        results[t] = [store[(7 * t + k) % 60].id for k in range(300)]  # each thread opens its own transaction

    threads = [threading.Thread(target=read, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[t] == [records[(7 * t + k) % 60].id for k in range(300)] for t in range(4))


def _spy_slow_path(monkeypatch) -> list:
    """Calls of ``Store._getitem`` (the Python path StoreIndex falls back to), in order."""
    from omni_data.store.reader import Store as StoreClass

    slow: list = []
    original = StoreClass._getitem
    monkeypatch.setattr(StoreClass, "_getitem", lambda self, i: slow.append(i) or original(self, i))
    return slow


def test_store_index_cache_follows_refresh_close_and_closed_handles(tmp_path, monkeypatch, lmdb_reads):
    """Once a shard's transaction is cached in C, reads skip every attribute lookup; the cache
    must still give way when the catalog grows, the store closes or a handle is closed under it."""
    from omni_data.store import Store, write_shard

    records = varied_records(60, seed=21, min_atoms=1)
    write_shard(tmp_path / "store", "s0", records[:20])
    write_shard(tmp_path / "store", "s1", records[20:40])
    store = Store(tmp_path / "store")
    slow = _spy_slow_path(monkeypatch)
    first = [store[i] for i in (3, 25, 3, 25)]  # first read of a shard opens it (Python), the next fills the cache
    assert slow == [3, 25]
    again = [store[i] for i in range(40)] + [store[-1]]
    assert slow == [3, 25]  # all from the cache
    assert_same_records(records[:40] + [records[39]], again)
    assert_same_records([records[3], records[25]] * 2, first)

    write_shard(tmp_path / "store", "s2", records[40:])  # the catalog grows: refresh() must drop the cached ends
    with pytest.raises(IndexError):
        store[45]
    store.refresh()
    assert_same_records([records[45], records[-1], records[5]], [store[45], store[-1], store[5]])

    store.close()  # handles closed: the cached transactions are gone, reads reopen
    slow.clear()
    assert_same_records([records[7], records[7]], [store[7], store[7]])
    assert slow == [7]

    store._rows[0].close()  # closed behind the store's back: the cached get fails, the long way reopens
    assert_same_records([records[8], records[9]], [store[8], store[9]])


def _read_after_fork(store, indices: list[int], queue) -> None:
    slow = _spy_slow_path(pytest.MonkeyPatch())  # the child's own copy of the class: nothing to undo
    got = [(store[i].id, float(store[i].positions.sum())) for i in indices]
    queue.put((got, slow))


@pytest.mark.skipif(sys.platform == "win32", reason="no fork")
def test_store_index_cache_is_not_used_after_a_fork(tmp_path, lmdb_reads):
    """A forked child must not read through the parent's cached read transactions: its first
    read of each shard goes the Python way (which opens the child's own environment)."""
    import multiprocessing as mp

    from omni_data.store import Store, write_shard

    records = varied_records(40, seed=22, min_atoms=1)
    write_shard(tmp_path / "store", "s0", records[:20])
    write_shard(tmp_path / "store", "s1", records[20:])
    store = Store(tmp_path / "store")
    for i in (1, 1, 30, 30):  # both shards cached in the parent
        store[i]
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_after_fork, args=(store, [1, 30, 2, 31], queue))
    child.start()
    got, slow = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert got == [(records[i].id, float(records[i].positions.sum())) for i in (1, 30, 2, 31)]
    assert slow[:2] == [1, 30]  # the child's first read of each shard (each read twice above)
    assert_same_records([records[1], records[30]], [store[1], store[30]])  # the parent still reads


def test_store_index_cache_per_thread(tmp_path, monkeypatch, lmdb_reads):
    """The cache holds one thread's transactions: reads from another thread take the long way
    (and its own transaction), never the first thread's."""
    import threading

    from omni_data.store import Store, write_shard

    records = varied_records(20, seed=23, min_atoms=1)
    write_shard(tmp_path / "store", "s0", records)
    store = Store(tmp_path / "store")
    store[0], store[0]
    slow = _spy_slow_path(monkeypatch)
    seen: list = []
    gets: list = []
    thread = threading.Thread(target=lambda: (seen.extend(store[i] for i in (4, 5)), gets.append(store._rows[0].getter())))
    thread.start()
    thread.join()
    assert_same_records([records[4], records[5]], seen)
    if lmdb_reads == "B-tree":
        assert slow == [4] and gets[0] is not store._rows[0].getter()  # its own transaction
    else:  # the row table serves every thread: the long way finds it, no Python read
        assert slow == [] and type(store._rows[0].rows()).__name__ == "LmdbRows"
    assert_same_records([records[6]], [store[6]])  # back in the main thread: right record


# ---- LMDB row tables: LmdbRows / lmdb_row (the same Record as decoding the LMDB value) ----------


def _lmdb_shard(tmp_path, records, name: str = "s"):
    from omni_data.store.lmdb import LmdbShard, write_lmdb

    path = tmp_path / f"{name}.lmdb"
    write_lmdb(path, name, [r.id for r in records], [encode_record(r) for r in records])
    return LmdbShard(path)


def _table(shard) -> tuple[bytearray, int, int, int]:
    """(the file's bytes, the table's first entry, rows, page size) of an LMDB shard."""
    import struct

    from omni_data.store.rowtable import ROWS_KEY

    raw = bytes(shard._txn().get(ROWS_KEY))
    _, n, psize, at = struct.unpack_from("<8sQQQ", raw)
    return bytearray(shard.path.read_bytes()), at + 32, n, psize


def test_lmdb_rows_give_the_python_path_records(tmp_path):
    records = varied_records(300, seed=41) + emt_records(12, seed=4) + [bare_record()]
    shard = _lmdb_shard(tmp_path, [r for r in records if len(r.numbers)] + [records[-1]])
    fast = shard.rows()
    assert type(fast) is codec._fastcodec.LmdbRows and shard.row_table_problem() is None
    for row in range(shard.n):
        assert_identical(codec._fastcodec.lmdb_row(fast, row), decode_record_py(shard.raw(row)))
    with pytest.raises(IndexError, match=f"row {shard.n} out of range for {shard.n} rows"):
        codec._fastcodec.lmdb_row(fast, shard.n)
    with pytest.raises(IndexError, match="out of range"):
        codec._fastcodec.read_rows(fast, [0, -1])
    with pytest.raises(TypeError):
        codec._fastcodec.lmdb_row(shard.getter(), 0)
    shard.close()


def test_lmdb_record_arrays_outlive_the_mapping(tmp_path):
    import gc

    records = varied_records(30, seed=42, min_atoms=1)
    shard = _lmdb_shard(tmp_path, records)
    got = [shard.record(i) for i in range(30)]
    shard.close()  # the row table and its mapping go
    del shard
    gc.collect()
    assert_same_records(records, got)
    got[3].positions[:] = 0.0  # writable copies, not views of the file


def test_lmdb_rows_on_garbage_entries_never_read_out_of_bounds(tmp_path):
    """Random table entries and bytes written over nodes and page headers: every read is the
    row's own Record or NotImplemented (the caller then reads through LMDB), never a wrong
    record and never a crash."""
    records = varied_records(60, seed=43, min_atoms=1)
    shard = _lmdb_shard(tmp_path, records)
    clean, table, n, psize = _table(shard)
    entries = np.frombuffer(bytes(clean[table:table + 8 * n]), "<u8")
    records_py = [decode_record_py(shard.raw(row)) for row in range(n)]
    rng = np.random.default_rng(5)
    outcomes = set()
    for trial in range(300):
        data = bytearray(clean)
        for _ in range(3):
            row, how = int(rng.integers(n)), trial % 4
            e = table + 8 * row
            if how == 0:  # an entry anywhere in (or past) the file, any length hint
                data[e:e + 8] = int(rng.integers(0, 2**63)).to_bytes(8, "little")
            elif how == 1:  # another row's node
                data[e:e + 8] = bytes(entries[int(rng.integers(n))].tobytes())
            elif how == 2:  # a few bytes past the right node (inside the key or the value)
                data[e:e + 8] = int((int(entries[row]) & (2**40 - 1)) + int(rng.integers(1, 40))).to_bytes(8, "little")
            else:  # a random byte of the node's header, key or overflow page number (a flipped
                # byte of the value itself is damage no reader of LMDB can see)
                node = int(entries[row]) & (2**40 - 1)
                big = clean[node + 4] == 1  # F_BIGDATA: the 8 bytes after the key are a page number
                if big and rng.random() < 0.5:  # the overflow page's header
                    page = int.from_bytes(clean[node + 17:node + 25], "little") * psize
                    data[page + int(rng.integers(0, 16))] = int(rng.integers(256))
                else:
                    data[node + int(rng.integers(0, 25 if big else 17))] = int(rng.integers(256))
        fast = codec._fastcodec.LmdbRows(data, table, n, psize)
        for row in range(n):
            got = codec._fastcodec.lmdb_row(fast, row)
            if got is NotImplemented:
                outcomes.add("lmdb")
                continue
            outcomes.add("record")
            assert_identical(got, records_py[row])
    assert outcomes == {"lmdb", "record"}


def test_lmdb_rows_checks_its_arguments(tmp_path):
    shard = _lmdb_shard(tmp_path, varied_records(5, seed=44, min_atoms=1))
    data, table, n, psize = _table(shard)
    LmdbRows = codec._fastcodec.LmdbRows

    def unread(rows) -> int:  # rows lmdb_row leaves to LMDB
        return sum(codec._fastcodec.lmdb_row(rows, row) is NotImplemented for row in range(n))

    assert unread(LmdbRows(data, table, n, psize)) == 0
    for args, message in (((data, len(data) - 8, n, psize), "does not fit"), ((data, table, -1, psize), "does not fit"),
                          ((data, -1, n, psize), "does not fit"), ((data, table, n, 1000), "power of two"),
                          ((data, table, n, 256), "power of two")):
        with pytest.raises(ValueError, match=message):
            LmdbRows(*args)
    with pytest.raises(TypeError):
        LmdbRows(data, table, n, psize=psize)
    data[table:table + 8] = bytes(8)  # row 0 leads to byte 0: the meta page
    assert unread(LmdbRows(data, table, n, psize)) == 1
    shard.close()


def test_store_reads_lmdb_row_tables_in_c(tmp_path, monkeypatch):
    """store[i] and get_many across shards go through the row tables; a row whose entry is
    wrong is read through LMDB instead, with the same record."""
    from omni_data.store import Store, write_shard
    from omni_data.store.testing import swap_row_table_entries

    records = varied_records(60, seed=45, min_atoms=1)
    for k in range(3):
        write_shard(tmp_path / "store", f"s{k}", records[20 * k:20 * (k + 1)])
    swap_row_table_entries(tmp_path / "store" / "shards" / "s1.lmdb", 2, 7)
    store = Store(tmp_path / "store")
    calls: list = []
    original = codec._fastcodec.read_rows
    monkeypatch.setattr(codec, "read_rows_c", lambda gets, rows: calls.append(gets) or original(gets, rows))
    idx = [59, 0, 22, 27, 21, 22, 41]
    assert_same_records([records[i] for i in idx], store.get_many(idx))
    assert len(calls) == 1 and all(type(g) is codec._fastcodec.LmdbRows for g in calls[0])
    assert_same_records(records + records[::-1], [store[i] for i in range(60)] + [store[i] for i in range(59, -1, -1)])
    assert_same_records([records[22], records[27]], store._handle(1).records([2, 7]))


# ---- Arrow shards: ArrowRows / arrow_row (the same Record as ArrowShard.record_py) ----------------


def _arrow_shard(tmp_path, records, name: str = "a"):
    from omni_data.store.arrow import ArrowShard, records_to_table, write_table

    path = tmp_path / f"{name}.arrow"
    write_table(records_to_table(records), path)
    return ArrowShard(path)


def test_arrow_rows_give_the_python_path_records(tmp_path):
    from omni_data.schema import PackedJsonMetadata

    records = varied_records(300, seed=31) + emt_records(12, seed=3) + [bare_record()]
    shard = _arrow_shard(tmp_path, records)
    assert shard._fast is not None
    got = []
    for row in range(len(records)):
        c = codec._fastcodec.arrow_row(shard._fast, row)
        assert c is not NotImplemented
        packed = vars(c)["metadata"]
        assert type(packed) is (PackedJsonMetadata if records[row].metadata else dict)  # JSON left packed
        assert_identical(c, shard.record_py(row))
        got.append(c)
    assert_same_records(records, got)
    assert_same_records(records, [shard.record(row) for row in range(len(records))])
    rows = [5, 0, 299, 5, 312]
    assert_same_records([records[r] for r in rows], shard.records(rows))
    with pytest.raises(IndexError):
        codec._fastcodec.arrow_row(shard._fast, len(records))
    with pytest.raises(IndexError):
        codec._fastcodec.arrow_rows(shard._fast, [0, -1])
    with pytest.raises(IndexError, match=r"a\.arrow: row 999 out of range"):
        shard.records([0, 999])


def test_arrow_record_arrays_outlive_the_shard(tmp_path):
    """Arrays are copies in one bytearray per record, never views of the memory-mapped file."""
    import gc

    records = varied_records(20, seed=32, min_atoms=1)
    shard = _arrow_shard(tmp_path, records)
    got = shard.records(list(range(20)))
    del shard
    gc.collect()
    assert_same_records(records, got)
    got[0].positions += 1.0  # writable, and no other record shares its memory
    assert np.array_equal(got[1].positions, records[1].positions)


def _replace_column(table, name: str, array):
    import pyarrow as pa

    return table.set_column(table.schema.get_field_index(name), pa.field(name, table.schema.field(name).type), array)


def test_arrow_rows_the_c_reader_does_not_take_go_to_python(tmp_path):
    """A list whose length disagrees with n_atoms, or an id that is not UTF-8: arrow_row answers
    NotImplemented and ArrowShard.record raises the Python path's error; other rows still read."""
    import pyarrow as pa

    from omni_data.store.arrow import ArrowShard, records_to_table, write_table

    records = emt_records(6, seed=33)
    assert all(r.forces is not None for r in records)
    table = records_to_table(records)
    forces = table.column("forces").combine_chunks()
    lengths = np.diff(forces.offsets.to_numpy())
    lengths[1] -= 3  # row 1: one atom short
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.random.default_rng(0).normal(size=int(offsets[-1]))
    bad_forces = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    ids = [r.id.encode() for r in records]
    ids[3] = b"\xff\xfe"
    id_offsets = np.concatenate([[0], np.cumsum([len(i) for i in ids])]).astype(np.int32)
    bad_ids = pa.Array.from_buffers(pa.string(), len(ids), [None, pa.py_buffer(id_offsets), pa.py_buffer(b"".join(ids))])
    write_table(_replace_column(table, "forces", bad_forces), tmp_path / "forces.arrow")
    write_table(_replace_column(table, "id", bad_ids), tmp_path / "ids.arrow")
    shard = ArrowShard(tmp_path / "forces.arrow")
    assert shard._fast is not None
    assert codec._fastcodec.arrow_row(shard._fast, 1) is NotImplemented
    with pytest.raises(ValueError, match="reshape"):
        shard.record(1)
    good = shard.record(0)
    assert np.array_equal(good.forces.reshape(-1), values[:lengths[0]]) and good.id == records[0].id
    shard = ArrowShard(tmp_path / "ids.arrow")
    assert codec._fastcodec.arrow_row(shard._fast, 3) is NotImplemented
    with pytest.raises(ValueError, match=r"ids.arrow: row 3: column 'id' is not valid UTF-8"):
        shard.record(3)
    assert_same_records(records[4:], [shard.record(4), shard.record(5)])


def test_arrow_metadata_that_is_not_json_names_the_record(tmp_path):
    import pyarrow as pa

    from omni_data.store.arrow import ArrowShard, records_to_table, write_table

    records = varied_records(3, seed=34, min_atoms=1)
    table = _replace_column(records_to_table(records), "metadata", pa.array(['{"a": 1}', "{oops", None]))
    write_table(table, tmp_path / "m.arrow")
    shard = ArrowShard(tmp_path / "m.arrow")
    assert shard.record(0).metadata == {"a": 1} and shard.record(2).metadata == {}
    record = shard.record(1)  # read lazily, as from LMDB: the error comes with the first access
    with pytest.raises(ValueError, match=f"record {record.id!r}.*metadata could not be unpacked"):
        record.metadata
    with pytest.raises(ValueError, match="row 1: metadata is not valid JSON"):
        shard.record_py(1)


def test_arrow_rows_checks_its_buffers():
    import pyarrow as pa

    from omni_data.store.arrow import SCHEMA

    ArrowRows = codec._fastcodec.ArrowRows
    with pytest.raises(ValueError, match="21 columns"):
        ArrowRows(1, ((None, None, None),) * 3)
    with pytest.raises(ValueError, match="triple"):
        ArrowRows(1, (None,) * len(SCHEMA))
    empty = pa.py_buffer(b"")
    with pytest.raises(ValueError, match="column 0 do not fit 1 rows"):  # a string column needs 2 offsets
        ArrowRows(1, ((None, empty, empty),) + ((None, None, None),) * (len(SCHEMA) - 1))
    with pytest.raises(TypeError):
        ArrowRows(1, ((None, 3, None),) * len(SCHEMA))  # not a buffer


def test_arrow_shards_the_c_reader_does_not_cover_read_in_python(tmp_path):
    """A shard of another schema (an extra column) or with nulls inside a list has no ArrowRows
    and reads through the Python path, with the same records."""
    import pyarrow as pa

    from omni_data.store.arrow import ArrowShard, records_to_table, write_table

    records = varied_records(10, seed=35, min_atoms=1)
    table = records_to_table(records)
    write_table(table.append_column("extra", pa.array(range(10))), tmp_path / "x.arrow")
    shard = ArrowShard(tmp_path / "x.arrow")
    assert shard._fast is None
    assert_same_records(records, [shard.record(r) for r in range(10)])
    write_table(table.slice(0, 0), tmp_path / "empty.arrow")
    assert ArrowShard(tmp_path / "empty.arrow")._fast is None


def test_store_index_reads_arrow_shards_in_c(tmp_path, monkeypatch):
    """store[i] on an Arrow store: the first read of a shard opens it (Python), later ones run in
    C from the cached ArrowRows; refresh() and close() give way as for LMDB."""
    from omni_data.store import Store, write_shard

    records = varied_records(60, seed=36, min_atoms=1)
    write_shard(tmp_path / "store", "s0", records[:20], formats=("arrow",))
    write_shard(tmp_path / "store", "s1", records[20:40], formats=("arrow",))
    store = Store(tmp_path / "store", backend="arrow")
    slow = _spy_slow_path(monkeypatch)
    first = [store[i] for i in (3, 25, 3, 25)]
    assert slow == [3, 25]
    again = [store[i] for i in range(40)] + [store[-1]]
    assert slow == [3, 25]
    assert_same_records([records[3], records[25]] * 2 + records[:40] + [records[39]], first + again)
    write_shard(tmp_path / "store", "s2", records[40:], formats=("arrow",))
    with pytest.raises(IndexError):
        store[45]
    store.refresh()
    assert_same_records([records[45], records[-1], records[5]], [store[45], store[-1], store[5]])
    store.close()
    slow.clear()
    assert_same_records([records[7], records[7]], [store[7], store[7]])
    assert slow == [7]
    calls: list = []
    original = codec.read_rows_c
    monkeypatch.setattr(codec, "read_rows_c", lambda gets, rows: calls.append(gets) or original(gets, rows))
    # rows of three shards: one C call, each row with its shard's ArrowRows
    assert_same_records([records[i] for i in (59, 0, 21, 22)], store.get_many([59, 0, 21, 22]))
    assert len(calls) == 1 and all(type(g) is codec._fastcodec.ArrowRows for g in calls[0])
    assert_same_records([records[i] for i in (1, 2)], store.get_many([1, 2]))  # one shard: ArrowShard.records


def test_arrow_rows_on_garbage_offsets_never_read_out_of_bounds(tmp_path):
    """Random bytes written over the offsets and atom counts: every read is a Record of
    consistent shapes or NotImplemented, never a crash (each read checks its offsets)."""
    from omni_data.store.arrow import _fast_rows, records_to_table

    records = varied_records(40, seed=37, min_atoms=1)
    table = records_to_table(records)
    rows = _fast_rows(table)
    assert rows is not None
    rng = np.random.default_rng(0)
    columns = []
    for name in table.schema.names:  # the triples _fast_rows built, as mutable copies
        array = table.column(name).chunk(0)
        buffers = array.buffers()
        if array.type.num_fields:  # a list
            triple = [buffers[0], buffers[1], array.values.buffers()[1]]
        elif len(buffers) == 3:
            triple = list(buffers)
        else:
            triple = [buffers[0], None, buffers[1]]
        columns.append([None if b is None else bytearray(b.to_pybytes()) for b in triple])
    outcomes = set()
    for trial in range(200):
        mutated = [[None if b is None else bytearray(b) for b in triple] for triple in columns]
        for _ in range(4):
            name = rng.choice(["n_atoms", "positions", "forces", "numbers", "id", "pbc", "metadata", "tags"])
            buf = mutated[table.schema.names.index(name)][1 if name not in ("n_atoms",) else 2]
            if buf:
                buf[int(rng.integers(len(buf)))] = int(rng.integers(256))
        fast = codec._fastcodec.ArrowRows(len(records), tuple(tuple(t) for t in mutated))
        for row in range(len(records)):
            got = codec._fastcodec.arrow_row(fast, row)
            if got is NotImplemented:
                outcomes.add("python")
                continue
            outcomes.add("record")
            n = len(got.numbers)
            assert got.positions.shape == (n, 3) and got.pbc.shape == (3,)
            assert got.forces is None or got.forces.shape == (n, 3)
    assert outcomes == {"python", "record"}


def test_arrow_columns_with_one_value_are_read_without_their_buffers(tmp_path):
    """A shard is usually one dataset and task: such columns (and list columns null throughout)
    are answered from one value. They must give the same records, and "the same value" is bit
    for bit (-0.0 is not 0.0)."""
    import math

    import pyarrow as pa

    from omni_data.store.arrow import _one_value

    records = emt_records(8, seed=38)
    for k, r in enumerate(records):
        r.magmoms = r.charge = r.spin = None
        r.metadata = {}
        r.energy = -0.0 if k else 0.0
    shard = _arrow_shard(tmp_path, records)
    got = [codec._fastcodec.arrow_row(shard._fast, row) for row in range(8)]
    for row, record in enumerate(got):
        assert_identical(record, shard.record_py(row))
    assert_same_records(records, got)
    assert [math.copysign(1, r.energy) for r in got] == [1.0] + [-1.0] * 7
    assert got[0].metadata == {} and got[0].metadata is not got[1].metadata  # a fresh dict each
    assert _one_value(pa.array(["pbe"] * 3), "task") == (True, "pbe")
    assert _one_value(pa.array(["pbe", "pbe", "r2scan"]), "task") == (False, None)
    assert _one_value(pa.array([None, None], pa.float64()), "charge") == (True, None)
    assert _one_value(pa.array([1.0, None]), "weight") == (False, None)
    assert _one_value(pa.array([0.0, -0.0]), "energy") == (False, None)
    assert _one_value(pa.array([2, 2], pa.int64()), "spin") == (True, 2)
    assert _one_value(pa.array(['{"a": 1}'] * 2), "metadata") == (False, None)  # only all-null metadata
    assert _one_value(pa.array([None, None], pa.string()), "metadata") == (True, None)
