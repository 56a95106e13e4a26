"""Export: extxyz read back by ase.io.read, .aselmdb read back by ase-db-backends' LMDBDatabase."""
from __future__ import annotations

import numpy as np
import pytest

from omni_data.export import export_aselmdb, export_extxyz
from omni_data.store import Store, write_shard
from omni_data.store.testing import emt_records


@pytest.fixture()
def store(tmp_path):
    write_shard(tmp_path / "st", "a", emt_records(8, seed=1, task="pbe"))
    write_shard(tmp_path / "st", "b", emt_records(5, seed=2, task="r2scan", dataset="other"))
    return Store(tmp_path / "st")


def test_extxyz_round_trip_through_ase(store, tmp_path):
    from ase.io import read

    out = tmp_path / "all.extxyz"
    assert export_extxyz(store, out) == 13
    frames = read(str(out), ":")
    assert len(frames) == 13
    for atoms, r in zip(frames, store):
        assert np.allclose(atoms.positions, r.positions) and atoms.numbers.tolist() == r.numbers.tolist()
        assert atoms.get_potential_energy() == pytest.approx(r.energy, abs=1e-10)
        assert np.allclose(atoms.get_forces(apply_constraint=False), r.forces)
        if r.stress is not None:
            assert np.allclose(atoms.get_stress(voigt=True), r.stress)
        assert atoms.info["omni_id"] == r.id and atoms.info["task"] == r.task
    assert len(read(str(out), ":")) == 13
    n = export_extxyz(store, tmp_path / "pbe.extxyz", task="pbe")
    assert n == 8 and {a.info["task"] for a in read(str(tmp_path / "pbe.extxyz"), ":")} == {"pbe"}


def test_aselmdb_round_trip_through_ase_db_backends(store, tmp_path):
    from ase_db_backends.aselmdb import LMDBDatabase

    out = tmp_path / "r2scan.aselmdb"
    assert export_aselmdb(store, out, task="r2scan") == 5
    assert not (tmp_path / "r2scan.aselmdb-lock").exists()
    db = LMDBDatabase(out, readonly=True)
    rows = [db.get(i) for i in db.ids]
    expected = list(store.select(task="r2scan"))
    assert len(rows) == 5
    for row, r in zip(rows, expected):
        atoms = row.toatoms()
        assert np.allclose(atoms.positions, r.positions)
        assert atoms.get_potential_energy() == pytest.approx(r.energy)
        assert np.allclose(atoms.get_forces(apply_constraint=False), r.forces)
        assert row.key_value_pairs["omni_id"] == r.id
    db.close()
    with pytest.raises(ValueError, match="must end in .aselmdb"):
        export_aselmdb(store, tmp_path / "x.lmdb")
