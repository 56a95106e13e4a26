"""StoreSet: two real stores (OMol25 aselmdb samples, SPICE modelforge HDF5) read as one."""

from __future__ import annotations

import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from omni_data.cli.main import main as omni_data
from omni_data.harmonize.references import fit_store, load_references, write_references
from omni_data.harmonize.splits import split_labels, split_of, split_store
from omni_data.store import Store, StoreSet, open_stores, write_shard
from omni_data.store.testing import emt_records

SPICE = "hdf5/modelforge_SPICE-1.1.4_n2.hdf5"


def ingest(manifest: str, source: Path, out: Path) -> Path:
    rc = omni_data(["ingest", manifest, "--source", str(source), "--out", str(out), "--no-cluster", "--no-progress"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def two_stores(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("multi")
    return (
        ingest("omol25", shared_data / "aselmdb", root / "omol"),
        ingest("spice", shared_data / SPICE, root / "spice"),
    )


def same_record(a, b) -> None:
    assert a.id == b.id and a.task == b.task and a.dataset == b.dataset
    np.testing.assert_array_equal(a.numbers, b.numbers)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert a.energy == b.energy
    np.testing.assert_array_equal(a.forces, b.forces)


def test_global_index_maps_to_members(two_stores):
    a, b = Store(two_stores[0]), Store(two_stores[1])
    ss = StoreSet(two_stores)
    assert len(a) == 180 and len(b) == 55 and len(ss) == 235
    assert ss.path == tuple(two_stores) and ss.stores[0].path == two_stores[0]
    for i in (0, 1, 179):
        same_record(ss[i], a[i])
    for j in (0, 17, 54):
        same_record(ss[180 + j], b[j])
    same_record(ss[-1], b[54])
    same_record(ss[np.int64(181)], b[1])
    with pytest.raises(IndexError):
        ss[235]
    assert [r.id for r in ss.get_many([181, 3, -1])] == [b[1].id, a[3].id, b[54].id]
    assert [r.id for r in ss] == [r.id for r in a] + [r.id for r in b]
    assert ss.get(b[7].id).id == b[7].id and ss.index_of(a[42].id) == 42 and ss.index_of(b[7].id) == 187
    with pytest.raises(KeyError):
        ss.get("spice:no-such-record")
    atoms = ss.to_atoms(200)
    assert atoms.get_potential_energy() == pytest.approx(b[20].energy)
    np.testing.assert_allclose(atoms.get_forces(), b[20].forces)


def test_table_and_select(two_stores):
    a, b = Store(two_stores[0]), Store(two_stores[1])
    ss = StoreSet(two_stores)
    t = ss.table(["id", "task", "n_atoms"])
    assert t.column("id").to_pylist() == [r.id for r in a] + [r.id for r in b]
    assert t.column("n_atoms").to_pylist()[180] == len(b[0].numbers)
    view = ss.select(task=["omol25_high", "spice"])
    want = [r.id for r in a if r.task == "omol25_high"] + [r.id for r in b]
    assert len(want) == 10 + 55 and [r.id for r in view] == want
    assert view.table(["id"]).column("id").to_pylist() == want
    assert view[-1].id == b[54].id and view.get(b[3].id).id == b[3].id
    with pytest.raises(KeyError):
        view.get(next(r.id for r in a if r.task == "omol25_low"))
    assert len(ss.select(dataset="spice")) == 55 and len(ss.select(dataset="spice", task="omol25_low")) == 0


def test_merged_counts_match_records(two_stores):
    ss = StoreSet(two_stores)
    recs = list(ss)
    c = ss.catalog.counts
    assert c["records"] == 235 and c["atoms"] == sum(len(r.numbers) for r in recs)
    assert c["by_task"] == dict(Counter(r.task for r in recs)) == {"omol25_high": 10, "omol25_low": 170, "spice": 55}
    assert c["by_dataset"] == {"omol25": 180, "spice": 55}
    from ase.data import chemical_symbols

    by_el = Counter(chemical_symbols[z] for r in recs for z in set(r.numbers.tolist()))
    assert c["by_element"] == dict(by_el) and c["by_element"]["Na"] == 5
    assert c["shards"] == 4 and len(ss.catalog.shards) == 4 and ss.catalog.shards[-1]["store"] == str(two_stores[1])
    assert ss.catalog.sections == {}  # no member has references or splits yet


def test_duplicate_ids_across_members_are_an_error(two_stores, shared_data, tmp_path):
    again = ingest("omol25", shared_data / "aselmdb", tmp_path / "omol_again")
    with pytest.raises(ValueError, match=r"duplicate id 'omol25:.*omol_again") as err:
        StoreSet([two_stores[0], two_stores[1], again])
    assert str(two_stores[0]) in str(err.value)
    with pytest.raises(ValueError, match="given twice"):
        StoreSet([two_stores[1], str(two_stores[1]) + "/"])


def test_open_stores(two_stores, tmp_path):
    one = open_stores(str(two_stores[0]))
    assert type(one) is Store and type(open_stores([two_stores[1]])) is Store
    assert isinstance(open_stores(list(two_stores)), StoreSet)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        open_stores([two_stores[0], tmp_path / "nothing"])


def test_pickled_storeset_reads_the_same(two_stores):
    ss = StoreSet(two_stores)
    ss[0], ss[200]  # open handles first: pickling must drop them
    back = pickle.loads(pickle.dumps(ss))
    same_record(back[200], ss[200])
    assert back.catalog.counts == ss.catalog.counts


@pytest.fixture
def fitted(two_stores, tmp_path) -> tuple[Path, Path]:
    """Copies of both stores with references fitted and splits written by the real commands."""
    out = []
    for p in two_stores:
        q = tmp_path / p.name
        shutil.copytree(p, q)
        write_references(Store(q), fit_store(str(q)))
        out.append(q)
    return out[0], out[1]


def test_references_merged_per_task(fitted):
    ss = StoreSet(fitted)
    refs = load_references(ss)
    ra, rb = load_references(Store(fitted[0])), load_references(Store(fitted[1]))
    assert set(refs) == {"omol25_high", "omol25_low", "spice"}
    assert refs == {**ra, **rb}
    assert refs["spice"][11] == rb["spice"][11] and 11 in rb["spice"]  # sodium: only SPICE has it
    assert ss.catalog.reference_sources == {
        "omol25_high": [str(fitted[0])],
        "omol25_low": [str(fitted[0])],
        "spice": [str(fitted[1])],
    }


def test_disagreeing_references_name_both_stores(fitted, tmp_path):
    other = tmp_path / "emt_spice"
    write_shard(other, "emt-0", emt_records(6, seed=4, dataset="emt", task="spice"))
    write_references(Store(other), fit_store(str(other)))
    with pytest.raises(ValueError, match=rf"{fitted[1]} and {other} disagree on the references of task 'spice'"):
        StoreSet([fitted[0], fitted[1], other])


def test_splits_concatenate_and_need_every_member(fitted):
    split_store(fitted[0], seed=3)
    with pytest.raises(KeyError, match=str(fitted[1])):
        split_of(StoreSet(fitted))
    assert "splits" not in StoreSet(fitted).catalog.sections
    split_store(fitted[1], seed=3)
    ss = StoreSet(fitted)
    labels = split_of(ss)
    want = np.concatenate([split_of(Store(fitted[0])), split_of(Store(fitted[1]))])
    assert len(labels) == len(ss) == 235 and (labels == want).all()
    assert split_labels(ss).column("id").to_pylist() == [r.id for r in ss]
    counts = ss.catalog.sections["splits"]["counts"]
    assert counts == {s: int((labels == s).sum()) for s in ("train", "val", "test")}
