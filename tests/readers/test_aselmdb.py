"""aselmdb reader against ase_db_backends.aselmdb.LMDBDatabase (the independent reader)."""

from __future__ import annotations

import zlib
from collections import Counter
from pathlib import Path

import lmdb
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase_db_backends.aselmdb import LMDBDatabase

from omni_data.readers import ReaderError, ReadOptions, get_reader
from omni_data.schema import Rejected
from omni_data.testing import check_reader, read_all

aselmdb = get_reader("aselmdb")
SAMPLES = [
    "chemreporter_omol25_ani2x_samples.aselmdb",
    "chemreporter_omol25_reactivity_samples.aselmdb",
    "chemreporter_omol25_rgd_samples.aselmdb",
]


def _opts(**kw) -> ReadOptions:
    return ReadOptions(dataset="omol", task="omol", **kw)


@pytest.mark.parametrize("name", SAMPLES)
def test_matches_lmdbdatabase(shared_data: Path, name: str) -> None:
    path = shared_data / "aselmdb" / name
    report = check_reader("aselmdb", path, _opts(), target=25, expected_rejected=0)
    db = LMDBDatabase(path, readonly=True)
    assert report.n_records == db.count() == 60
    for rec in report.records:
        row = db.get(id=rec.metadata["row_id"])
        assert rec.id == f"omol:{name}:{row.id}"
        np.testing.assert_array_equal(rec.numbers, row.numbers)
        np.testing.assert_array_equal(rec.positions, row.positions)
        assert rec.energy == row.energy and rec.energy_kind == "total"
        np.testing.assert_array_equal(rec.forces, row.forces)
        assert rec.cell is None and not rec.pbc.any() and rec.stress is None
        assert rec.charge == float(row.data["charge"]) and rec.spin == int(row.data["spin"])
        assert rec.metadata["charge_source_key"] == "data.charge"
        assert rec.metadata["data"]["data_id"] == row.data["data_id"]
        assert rec.metadata["data"]["source"] == row.data["source"]


def test_reactivity_has_mixed_charge_and_spin(shared_data: Path) -> None:
    path = shared_data / "aselmdb" / "chemreporter_omol25_reactivity_samples.aselmdb"
    records = read_all("aselmdb", path, _opts())
    db = LMDBDatabase(path, readonly=True)
    expected = Counter((int(r.data["charge"]), int(r.data["spin"])) for r in db.select())
    assert Counter((int(r.charge), r.spin) for r in records) == expected
    assert {(1, 1), (0, 3), (1, 3)} <= set(expected)


def _made_db(path: Path) -> None:
    """A small periodic OMat-like database written by ase-db-backends itself."""
    db = LMDBDatabase(path)
    for k in range(5):
        atoms = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3 + 0.01 * k]], cell=np.eye(3) * 5.4, pbc=True)
        atoms.set_constraint(FixAtoms(indices=[0]))
        atoms.calc = SinglePointCalculator(
            atoms,
            energy=-10.0 - k,
            forces=np.full((2, 3), 0.1 * k),
            stress=np.array([0.01, 0.02, 0.03, 0.004, 0.005, 0.006]) * k,
        )
        db.write(atoms, data={"sid": f"s{k}"})
    db.delete([2])
    db.close()


def test_periodic_rows_constraints_and_deleted_ids(tmp_path: Path) -> None:
    path = tmp_path / "made.aselmdb"
    _made_db(path)
    report = check_reader("aselmdb", path, _opts(), target=2, expected_records=4, expected_rejected=0)
    recs = sorted(report.records, key=lambda r: r.source_index)
    assert [r.metadata["row_id"] for r in recs] == [1, 3, 4, 5]
    third = recs[1]  # row id 3, written with k = 2
    assert third.energy == -12.0 and third.pbc.all()
    np.testing.assert_allclose(third.cell, np.eye(3) * 5.4)
    np.testing.assert_allclose(third.stress, [0.02, 0.04, 0.06, 0.008, 0.010, 0.012])
    np.testing.assert_array_equal(third.fixed, [True, False])
    assert third.metadata["data"]["sid"] == "s2"


def test_missing_key_is_rejected_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "holes.aselmdb"
    _made_db(path)
    env = lmdb.open(str(path), subdir=False)
    with env.begin(write=True) as txn:
        txn.delete(b"4")
        txn.put(b"5", b"not zlib")
    env.close()
    items = read_all("aselmdb", path, _opts())
    assert [type(i).__name__ for i in items] == ["Record", "Record", "Rejected", "Rejected"]
    assert isinstance(items[2], Rejected) and isinstance(items[3], Rejected)
    assert items[2].reason.startswith("missing:row id 4") and items[2].source_index == 2
    assert items[3].reason.startswith("parse:row id 5")


def test_not_an_ase_lmdb_raises(tmp_path: Path) -> None:
    path = tmp_path / "plain.aselmdb"
    env = lmdb.open(str(path), subdir=False)
    with env.begin(write=True) as txn:
        txn.put(b"0", b"x")
    env.close()
    with pytest.raises(ReaderError, match="nextid"):
        aselmdb.partitions(path, 10)
    with pytest.raises(ReaderError, match="no such"):
        aselmdb.partitions(tmp_path / "absent.aselmdb", 10)


def test_stdlib_json_path_gives_identical_records(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = shared_data / "aselmdb" / "chemreporter_omol25_rgd_samples.aselmdb"
    fast = read_all("aselmdb", path, _opts())
    monkeypatch.setattr(aselmdb, "_orjson", None)
    slow = read_all("aselmdb", path, _opts())
    assert [r.id for r in fast] == [r.id for r in slow]
    for a, b in zip(fast, slow):
        assert a.energy == b.energy and a.metadata == b.metadata and (a.charge, a.spin) == (b.charge, b.spin)
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.forces, b.forces)


def test_row_that_is_not_an_object_is_rejected_the_rest_read(tmp_path: Path) -> None:
    path = tmp_path / "list.aselmdb"
    _made_db(path)
    env = lmdb.open(str(path), subdir=False)
    with env.begin(write=True) as txn:
        txn.put(b"3", zlib.compress(b"[1, 2, 3]"))
    env.close()
    items = read_all("aselmdb", path, _opts())
    assert [type(i).__name__ for i in items] == ["Record", "Rejected", "Record", "Record"]
    assert items[1].reason == "parse:row id 3 holds a list, not a JSON object" and items[1].source_index == 1
    assert [i.metadata["row_id"] for i in items if not isinstance(i, Rejected)] == [1, 4, 5]


def test_undecodable_metadata_is_a_reader_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "meta.aselmdb"
    _made_db(path)
    env = lmdb.open(str(path), subdir=False)
    with env.begin(write=True) as txn:
        txn.put(b"metadata", b"not zlib")
    env.close()
    with pytest.raises(ReaderError, match=r"meta\.aselmdb: cannot decode the 'metadata' key \(error"):
        read_all("aselmdb", path, _opts())


def test_file_cut_by_one_page_is_refused_with_both_sizes(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "aselmdb" / "chemreporter_omol25_reactivity_samples.aselmdb"
    env = lmdb.open(str(src), subdir=False, readonly=True, lock=False)
    psize = env.stat()["psize"]
    env.close()
    path = tmp_path / "cut.aselmdb"
    path.write_bytes(src.read_bytes()[:-psize])  # its live rows all survive, but the download is incomplete
    full = src.stat().st_size
    with pytest.raises(
        ReaderError,
        match=rf"cut\.aselmdb: truncated LMDB file .* has {full - psize} bytes "
        rf"but its meta page \(txn \d+\) needs {full} bytes",
    ):
        aselmdb.partitions(path, 10)


def test_garbage_file_is_refused_before_mapping(tmp_path: Path) -> None:
    path = tmp_path / "junk.aselmdb"
    path.write_bytes(b"\x00garbage, not an LMDB file\xff" * 50)
    with pytest.raises(ReaderError, match=r"junk\.aselmdb: not an LMDB file \(meta page 0 has magic 0x"):
        aselmdb.partitions(path, 10)
