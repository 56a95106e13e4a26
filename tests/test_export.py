"""Export: extxyz read back by ase.io.read, .aselmdb read back by ase-db-backends' LMDBDatabase."""

from __future__ import annotations

import re

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


def test_extxyz_keeps_the_source_info_keys(shared_data, tmp_path):
    """Issue 22 item 9: config_type (what MACE/wfl weight by) and the file's other info keys come
    back out of a store, checked against ase.io.read of the original file."""
    from ase.io import read

    from omni_data.readers import ReadOptions
    from omni_data.testing import check_reader

    path = shared_data / "extxyz" / "chemreporter_spice_amino_acid_ligand_26frames.extxyz"
    report = check_reader("extxyz", path, ReadOptions(dataset="spice", task="wb97m"))
    write_shard(tmp_path / "st", "spice", report.records)
    out = tmp_path / "spice.extxyz"
    stored = Store(tmp_path / "st")
    assert export_extxyz(stored, out) == 26
    source = read(str(path), ":")
    exported = read(str(out), ":")
    assert len(source) == len(exported) == 26
    smiles = re.findall(r" smiles=(\S+) ", path.read_text())
    assert len(smiles) == 26 and smiles[0].startswith("[O:1]=[C:4]([N:16]")
    for atoms, record in zip(exported, stored):
        assert atoms.info["omni_id"] == record.id
        original = source[record.source_index]
        assert atoms.info["conf_idx"] == original.info["conf_idx"]
        assert atoms.info["config_type"] == original.info["config_type"] == "SPICE_Amino_Acid_Ligand"
        # ase.io.read mangles this unquoted SMILES ([O:1] -> O:1); the file's own text is the truth
        assert atoms.info["smiles"] == smiles[record.source_index]
        assert atoms.info["dataset"] == "spice" and atoms.info["task"] == "wb97m"  # Omni's own keys kept
        np.testing.assert_allclose(atoms.positions, original.positions, atol=1e-10)
        assert atoms.get_potential_energy() == pytest.approx(original.get_potential_energy(), abs=1e-8)


def test_aselmdb_keeps_scalar_source_info_as_key_value_pairs(shared_data, tmp_path):
    from ase.io import read
    from ase_db_backends.aselmdb import LMDBDatabase

    from omni_data.readers import ReadOptions
    from omni_data.testing import check_reader

    path = shared_data / "extxyz" / "chemreporter_spice_amino_acid_ligand_26frames.extxyz"
    write_shard(tmp_path / "st", "spice", check_reader("extxyz", path, ReadOptions(dataset="spice", task="w")).records)
    assert export_aselmdb(Store(tmp_path / "st"), tmp_path / "s.aselmdb") == 26
    db = LMDBDatabase(tmp_path / "s.aselmdb", readonly=True)
    kvs = [db.get(i).key_value_pairs for i in db.ids]
    db.close()
    assert {kv["config_type"] for kv in kvs} == {"SPICE_Amino_Acid_Ligand"}
    assert sorted(kv["conf_idx"] for kv in kvs) == sorted(a.info["conf_idx"] for a in read(str(path), ":"))


def test_export_into_a_missing_folder_names_the_folder(store, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"folder {tmp_path / 'nope'} does not exist"):
        export_extxyz(store, tmp_path / "nope" / "all.extxyz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_aselmdb(store, tmp_path / "nope" / "all.aselmdb")
    assert list(tmp_path.iterdir()) == [tmp_path / "st"]


def test_an_empty_or_failed_export_leaves_no_file(store, tmp_path, monkeypatch):
    out = tmp_path / "x.extxyz"
    with pytest.raises(
        ValueError,
        match=r"no records with dataset 'typo'; nothing written \(tasks in this store: "
        r"pbe, r2scan; datasets in this store: emt, other\)",
    ):
        export_extxyz(store, out, dataset="typo")
    with pytest.raises(ValueError, match="nothing written"):
        export_aselmdb(store, tmp_path / "x.aselmdb", task="typo")
    from omni_data import export

    def broken(records):
        yield from []
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_atoms", broken)
    with pytest.raises(OSError, match="No space left"):
        export_extxyz(store, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st"]  # no 0-byte file, no temp file


def test_export_formats_come_from_the_table(store, tmp_path):
    from omni_data.cli.errors import OneLineParser
    from omni_data.cli.export import add_arguments
    from omni_data.export import EXPORTERS, export_store

    parser = OneLineParser(prog="omni-data export")
    add_arguments(parser)
    (fmt,) = [a for a in parser._actions if a.dest == "format"]
    assert tuple(fmt.choices) == tuple(EXPORTERS) == ("extxyz", "aselmdb")
    with pytest.raises(ValueError, match="unknown export format 'cif'; known: extxyz, aselmdb"):
        export_store(store, "cif", tmp_path / "x.cif")


def test_export_cli_errors_are_one_line(store, tmp_path, capsys):
    from omni_data.cli.main import main

    assert main(["export", str(store.path), "--format", "extxyz", "--out", str(tmp_path / "nope" / "a.xyz")]) == 1
    assert capsys.readouterr().err == (
        f"omni-data export: error: {tmp_path / 'nope' / 'a.xyz'}: folder "
        f"{tmp_path / 'nope'} does not exist (create it first)\n"
    )
    assert main(["export", str(store.path), "--format", "extxyz", "--out", str(tmp_path)]) == 2
    assert f"{tmp_path} is a folder; name the file to write" in capsys.readouterr().err
    assert (
        main(["export", str(store.path), "--format", "extxyz", "--out", str(tmp_path / "a.xyz"), "--dataset", "typo"])
        == 2
    )
    assert "no records with dataset 'typo'; nothing written" in capsys.readouterr().err
    assert not (tmp_path / "a.xyz").exists()
