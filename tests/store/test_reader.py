"""Store reading: Arrow and LMDB agree, random access by index and id, select, to_atoms, pickling."""

from __future__ import annotations

import multiprocessing as mp
import pickle

import numpy as np
import pytest

from omni_data.store import Store, write_shard
from omni_data.store.testing import assert_same_records, emt_records


def test_lmdb_and_arrow_give_identical_records(emt_store):
    root, records = emt_store
    lm, ar = Store(root, backend="lmdb"), Store(root, backend="arrow")
    assert len(lm) == len(ar) == len(records) == 25
    assert_same_records(records, [lm[i] for i in range(len(lm))])
    assert_same_records(records, [ar[i] for i in range(len(ar))])
    assert_same_records(records, list(lm))


def test_random_access_by_index_and_id(emt_store):
    root, records = emt_store
    store = Store(root)
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(records), 20):
        assert store[int(i)].id == records[int(i)].id
        assert store.get(records[int(i)].id).id == records[int(i)].id
        assert store.index_of(records[int(i)].id) == int(i)
    assert store[-1].id == records[-1].id
    assert store.locate(12) == ("b-000", 0)
    with pytest.raises(IndexError):
        store[len(records)]
    with pytest.raises(KeyError, match="no record with id"):
        store.get("d1:missing")


def test_bare_record_reads_back_with_none_labels(emt_store):
    root, _ = emt_store
    for backend in ("lmdb", "arrow"):
        r = Store(root, backend=backend).get("d1:bare")
        assert r.energy is None and r.forces is None and r.stress is None and r.cell is None
        assert r.charge is None and r.spin is None and r.magmoms is None


def test_select_by_task_and_dataset(emt_store):
    root, records = emt_store
    store = Store(root)
    pbe = store.select(task="pbe")
    assert [r.id for r in pbe] == [r.id for r in records if r.task == "pbe"]
    r2 = store.select(task="r2scan")
    assert len(r2) == 9 + 3 and r2.shard_names == ["b-000", "c-000"]
    d1_r2 = store.select(task="r2scan", dataset="d1")
    assert sorted(r.id for r in d1_r2) == sorted(r.id for r in records if r.task == "r2scan" and r.dataset == "d1")
    assert d1_r2.select(dataset="d2").__len__() == 0
    with pytest.raises(KeyError):
        pbe.get(records[-1].id)  # exists in the store, not in the view
    assert pbe.get(records[0].id).id == records[0].id
    assert pbe.table(["id"]).column("id").to_pylist() == [r.id for r in pbe]


def test_to_atoms_matches_record(emt_store):
    root, records = emt_store
    store = Store(root)
    for i in (0, 1, 3, 13):
        atoms, r = store.to_atoms(i), records[i]
        assert np.array_equal(atoms.numbers, r.numbers)
        assert np.allclose(atoms.positions, r.positions)
        assert atoms.get_potential_energy() == pytest.approx(r.energy)
        assert np.allclose(atoms.get_forces(), r.forces)
        if r.stress is not None:
            assert np.allclose(atoms.get_stress(voigt=True), r.stress)
        assert atoms.pbc.tolist() == r.pbc.tolist()
    free = next(i for i, r in enumerate(records) if r.energy_kind == "free")
    atoms = store.to_atoms(free)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(records[free].energy)


def test_table_and_quarantine(emt_store):
    root, records = emt_store
    store = Store(root)
    t = store.table(["id", "task", "energy", "n_atoms"])
    assert t.column("id").to_pylist() == [r.id for r in records]
    assert t.column("energy").to_pylist()[-1] is None
    q = store.quarantine()
    assert q.num_rows == 1 and q.column("reason")[0].as_py() == "nonfinite:forces"
    assert q.column("kind")[0].as_py() == "nonfinite" and q.column("shard")[0].as_py() == "c-000"
    assert store.catalog.counts["quarantined_by_reason"] == {"nonfinite": 1}


def _read_in_worker(args):
    store, indices = args
    return [store[i].id for i in indices] + [store.get(store[0].id).id]


def test_pickled_store_works_in_worker_processes(emt_store):
    root, records = emt_store
    store = Store(root)
    store[0]  # open handles in the parent: they must not travel
    state = pickle.dumps(store)
    assert b"Environment" not in state
    with mp.get_context("fork").Pool(2) as pool:
        out = pool.map(_read_in_worker, [(store, [1, 2, 20]), (store, [24, 0])])
    assert out[0] == [records[i].id for i in (1, 2, 20)] + [records[0].id]
    assert out[1] == [records[i].id for i in (24, 0)] + [records[0].id]
    assert store[3].id == records[3].id  # the parent's handles survive the children
    with mp.get_context("spawn").Pool(1) as pool:
        assert pool.map(_read_in_worker, [(store, [5])]) == [[records[5].id, records[0].id]]


def test_two_stores_on_one_path_and_refresh(tmp_path):
    write_shard(tmp_path, "s1", emt_records(3, seed=1))
    one, two = Store(tmp_path), Store(tmp_path)
    assert one[0].id == two[0].id  # same LMDB file open twice in one process
    write_shard(tmp_path, "s2", emt_records(4, seed=2))
    assert len(one) == 3  # readers see only the catalog they loaded...
    assert len(one.refresh()) == 7 and one[6].id == "emt:2-3"  # ...until refresh()


def test_get_many_matches_single_reads(emt_store):
    root, records = emt_store
    for backend in ("lmdb", "arrow"):
        store = Store(root, backend=backend)
        idx = [24, 0, 13, 13, -1, 5, 21, 12]  # across all three shards, repeats, a negative index
        assert_same_records([records[i] for i in idx], store.get_many(idx))
        assert_same_records([records[i] for i in idx], store.get_many(np.array(idx, dtype=np.int32)))
        assert store.get_many([]) == []
        view = store.select(task="r2scan")  # b-000 and c-000: global 12..24
        assert_same_records([records[12 + 3], records[12 + 10], records[12 + 0]], view.get_many([3, 10, 0]))
        with pytest.raises(IndexError, match="index 25 out of range"):
            store.get_many([0, 25])
        with pytest.raises(IndexError, match="index -26 out of range"):
            store.get_many([-26])
        with pytest.raises(TypeError, match="integers"):
            store.get_many([1.5])


def test_index_must_be_an_integer(emt_store):
    root, records = emt_store
    store = Store(root)
    assert store[np.int64(3)].id == records[3].id
    with pytest.raises(TypeError):
        store[2.5]
    view = store.select(task="r2scan")
    assert view[np.int32(1)].id == records[13].id
    with pytest.raises(TypeError):
        view[1.0]


def _read_inherited(store: Store, indices: list[int], queue) -> None:
    queue.put([(r.id, float(r.positions.sum())) for r in (store[i] for i in indices)])


def test_store_inherited_through_fork_reads_in_the_child(emt_store):
    # The child gets the parent's Store object itself (fork, nothing pickled): it must notice the
    # fork, open its own LMDB environment and transaction, and leave the parent's usable.
    root, records = emt_store
    store = Store(root)
    assert store[2].id == records[2].id and store[20].id == records[20].id  # handles open in the parent
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_inherited, args=(store, [2, 20, 7], queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert got == [(records[i].id, float(records[i].positions.sum())) for i in (2, 20, 7)]
    assert_same_records([records[7], records[2]], [store[7], store[2]])


def test_threads_share_one_store(emt_store):
    from concurrent.futures import ThreadPoolExecutor

    root, records = emt_store
    store = Store(root)
    idx = np.random.default_rng(3).integers(0, len(records), 200).tolist()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: store[i], idx))
    assert_same_records([records[i] for i in idx], got)


def test_open_shards_are_bounded_by_max_open(tmp_path):
    from omni_data.store import StoreSet
    from omni_data.store.lmdb import open_environments

    for k in range(6):
        write_shard(tmp_path / "a", f"s{k}", emt_records(2, seed=k, dataset="a"))
        write_shard(tmp_path / "b", f"s{k}", emt_records(2, seed=k, dataset="b"))
    store = Store(tmp_path / "a", max_open=2)
    before = open_environments()
    assert [store[i].id for i in range(12)] == [r.id for k in range(6) for r in emt_records(2, seed=k, dataset="a")]
    assert store.open_shards == 2 and open_environments() - before <= 2
    assert len(store.get_many(list(range(12))[::-1])) == 12 and store.open_shards == 2  # more shards than max_open
    store.close()
    assert store.open_shards == 0
    both = StoreSet([tmp_path / "a", tmp_path / "b"], max_open=4)
    assert [s.max_open for s in both.stores] == [2, 2]
    assert len(list(both)) == 24
    with pytest.raises(ValueError, match="max_open"):
        Store(tmp_path / "a", max_open=0)


def test_threads_reading_more_shards_than_max_open(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    for k in range(6):
        write_shard(tmp_path, f"s{k}", emt_records(3, seed=k))
    store = Store(tmp_path, max_open=2)
    expected = [r.id for k in range(6) for r in emt_records(3, seed=k)]
    idx = np.random.default_rng(0).integers(0, 18, 400).tolist()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: store[i].id, idx))
    assert got == [expected[i] for i in idx]
