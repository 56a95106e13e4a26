"""asedb reader against ase.db itself (the independent reader) on the real databases."""

from __future__ import annotations

from pathlib import Path

import ase.db
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms

from omni_data.readers import ReaderError, ReadOptions, get_reader
from omni_data.testing import check_reader, read_all

asedb = get_reader("asedb")


def _opts(**kw) -> ReadOptions:
    return ReadOptions(dataset="db", task="test", **kw)


def test_oxides_match_ase_db(shared_data: Path) -> None:
    path = shared_data / "asedb" / "fairchem_oxides.db"
    report = check_reader("asedb", path, _opts(), target=100, expected_records=295, expected_rejected=0)
    assert report.n_partitions == 3
    rows = list(ase.db.connect(path).select(sort="id"))
    by_id = {r.metadata["row_id"]: r for r in report.records}
    assert sorted(by_id) == [r.id for r in rows]
    for row in rows:
        rec = by_id[row.id]
        assert rec.id == f"db:fairchem_oxides.db:{row.id}"
        np.testing.assert_array_equal(rec.numbers, row.numbers)
        np.testing.assert_allclose(rec.positions, row.positions, atol=0)
        np.testing.assert_allclose(rec.cell, row.cell, atol=0)
        np.testing.assert_array_equal(rec.pbc, row.pbc)
        assert rec.energy == row.energy and rec.energy_kind == "total"
        np.testing.assert_allclose(rec.forces, row.forces, atol=0)
        assert rec.stress is None and rec.charge is None and rec.fixed is None
        np.testing.assert_array_equal(rec.tags, row.tags)
        assert rec.metadata["energy_source_key"] == "energy"


def test_schnetpack_qm9_energy_from_data_in_hartree(shared_data: Path) -> None:
    path = shared_data / "asedb" / "schnetpack_test_qm9.db"
    report = check_reader("asedb", path, _opts(key_map={"energy": "energy_U0"}), target=7, expected_records=20)
    db = ase.db.connect(path)
    assert db.metadata["_property_unit_dict"]["energy_U0"] == "Ha"
    for rec in report.records:
        row = db.get(id=rec.metadata["row_id"])
        u0_ha = float(row.data["energy_U0"][0])
        assert rec.energy == pytest.approx(u0_ha * 27.211386024367243, rel=1e-12)
        assert rec.forces is None and rec.cell is None and not rec.pbc.any()
        assert rec.metadata["energy_source_key"] == "data.energy_U0"
        assert rec.metadata["declared_units"] == {"energy_U0": "Ha"}
        np.testing.assert_allclose(rec.positions, row.positions)
    # first QM9 molecule (methane): U0 = -40.47893 Ha = -1101.4878 eV
    first = min(report.records, key=lambda r: r.source_index)
    assert first.energy == pytest.approx(-40.47893 * 27.211386, rel=1e-7)


def test_schnetpack_without_key_map_guesses_no_energy(shared_data: Path) -> None:
    records = read_all("asedb", shared_data / "asedb" / "schnetpack_test_qm9.db", _opts())
    assert all(r.energy is None for r in records)  # data.free_energy (G, Ha) is never taken as energy
    assert records[0].metadata["data"]["free_energy"] == pytest.approx(-40.498597)


def test_constraints_charges_stress_free_energy(tmp_path: Path) -> None:
    path = tmp_path / "made.db"
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0, 0, 1], [1, 0, 0]], cell=np.eye(3) * 5, pbc=True)
    atoms.set_initial_charges([0.5, 0.5, -2.0])
    atoms.set_constraint(FixAtoms(indices=[0, 2]))
    atoms.set_tags([0, 1, 2])
    stress = np.array([0.1, 0.2, 0.3, 0.01, 0.02, 0.03])
    forces = np.arange(9, dtype=float).reshape(3, 3)
    atoms.calc = SinglePointCalculator(
        atoms, energy=-3.0, free_energy=-3.5, forces=forces, stress=stress, magmoms=np.array([1.0, 0.0, -1.0])
    )
    with ase.db.connect(path) as db:
        db.write(atoms, spin=3)
        db.write(Atoms("He", positions=[[0, 0, 0]]))
    rec, bare = read_all("asedb", path, _opts())
    assert rec.energy == -3.0 and rec.energy_kind == "total"
    np.testing.assert_allclose(rec.stress, stress)
    np.testing.assert_allclose(rec.forces, forces)
    np.testing.assert_allclose(rec.magmoms, [1, 0, -1])
    assert rec.charge == -1.0 and rec.metadata["charge_source_key"] == "sum(initial_charges)"
    assert rec.spin == 3 and rec.metadata["spin_source_key"] == "key_value_pairs.spin"
    np.testing.assert_array_equal(rec.fixed, [True, False, True])
    np.testing.assert_array_equal(rec.tags, [0, 1, 2])
    assert bare.energy is None and bare.forces is None and bare.fixed is None and bare.charge is None
    (free, _) = read_all("asedb", path, _opts(energy_key="free_energy"))
    assert free.energy == -3.5 and free.energy_kind == "free"


def test_missing_or_invalid_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match="nothere.db"):
        asedb.partitions(tmp_path / "nothere.db", 10)
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ReaderError, match="bad.db"):
        asedb.partitions(bad, 10)


def test_schnetpack_layout_forces_in_kcal_per_mol(tmp_path: Path) -> None:
    """SchNetPack ``ASEAtomsData`` layout (schnetpack/data/atoms.py): properties as arrays in
    ``row.data``, units in metadata ``_property_unit_dict``, lengths in ``_distance_unit``."""
    path = tmp_path / "md17_like.db"
    with ase.db.connect(path) as db:
        db.metadata = {
            "_property_unit_dict": {"energy": "kcal/mol", "forces": "kcal/mol/Ang"},
            "_distance_unit": "Ang",
            "atomrefs": {},
        }
        db.write(
            Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]),
            data={"energy": np.array([-100.0]), "forces": np.array([[0, 0, 2.0], [0, 0, -2.0]])},
        )
    (rec,) = read_all("asedb", path, _opts(key_map={"energy": "energy", "forces": "forces"}))
    kcal = 0.04336410390059322  # eV per kcal/mol
    assert rec.energy == pytest.approx(-100.0 * kcal)
    np.testing.assert_allclose(rec.forces, [[0, 0, 2 * kcal], [0, 0, -2 * kcal]])
    assert rec.metadata["forces_source_key"] == "data.forces"
    (plain,) = read_all("asedb", path, _opts())  # the same without a key map (issue 22 item 1)
    assert plain.energy == rec.energy and plain.metadata["energy_source_key"] == "data.energy"
    np.testing.assert_allclose(plain.forces, rec.forces, atol=0)
    assert "data" not in plain.metadata  # the labels are not kept a second time as metadata


def _md17_schnetpack_db(path: Path, frames: int = 5) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """An ASE db laid out as SchNetPack's ``MD17`` ``AtomsDataModule`` writes it: metadata
    ``{"_property_unit_dict": {"energy": "kcal/mol", "forces": "kcal/mol/Ang"}, "_distance_unit":
    "Ang", "atomrefs": {}}`` (``ASEAtomsData.create``) and each frame as ``conn.write(atoms,
    data={"energy": E, "forces": F})`` (``ASEAtomsData._add_system``); labels only in ``row.data``.
    Source: github.com/atomistic-machine-learning/schnetpack, ``src/schnetpack/data/atoms.py``
    (commit 024d27d2780e37144a833cc19f2cb55d694b02a2) and ``src/schnetpack/datasets/md17.py``
    (``MD17.energy = "energy"``, ``MD17.forces = "forces"``, ``prepare_data``; commit
    011632db0a1f026207e887aa2bed64575759a837). A ``stress`` property in ``eV/Ang/Ang/Ang`` is
    added with a slightly non-symmetric 3x3 value, as a periodic SchNetPack set would carry it.
    Returns (energy in kcal/mol, forces in kcal/mol/Å, 3x3 stress in eV/Å³) per frame."""
    rng = np.random.default_rng(11)
    out = []
    with ase.db.connect(path) as db:
        db.metadata = {
            "_property_unit_dict": {"energy": "kcal/mol", "forces": "kcal/mol/Ang", "stress": "eV/Ang/Ang/Ang"},
            "_distance_unit": "Ang",
            "atomrefs": {},
        }
        for i in range(frames):
            atoms = Atoms(
                "C2H6O",
                positions=[
                    [0, 0, 0],
                    [1.5, 0, 0],
                    [-0.5, 0.9, 0],
                    [-0.5, -0.9, 0],
                    [-0.4, 0, 1.0],
                    [2.0, 0.9, 0],
                    [2.0, -0.9, 0],
                    [1.9, 0, 1.0],
                    [2.0, 0, -1.3],
                ],
                cell=np.eye(3) * 10,
                pbc=True,
            )
            atoms.rattle(0.02, seed=i)
            energy = -97195.0 + i
            forces = rng.normal(0, 20, (9, 3))
            stress = rng.normal(0, 0.01, (3, 3))
            stress = stress + stress.T
            stress[0, 1] += 1e-5 * (i + 1)  # asymmetry 0.5e-5*(i+1) eV/Å³, within the tolerance
            db.write(atoms, data={"energy": np.array([energy]), "forces": forces, "stress": stress})
            out.append((energy, forces, stress))
    return out


def test_schnetpack_md17_layout_read_without_a_key_map(tmp_path: Path) -> None:
    """Issue 22 item 1: energy and forces kept in ``row.data`` by SchNetPack are read by default
    (checked against ``ase.db``'s own rows), in eV from the declared kcal/mol, and a 3x3 stress
    is stored as its symmetric part with the asymmetry noted."""
    path = tmp_path / "ethanol.db"
    frames = _md17_schnetpack_db(path)
    records = sorted(read_all("asedb", path, _opts()), key=lambda r: r.source_index)
    kcal = 0.04336410390059322  # eV per kcal/mol (ase.units.kcal / ase.units.mol)
    db = ase.db.connect(path)
    assert len(records) == len(frames) == db.count()
    for i, (rec, (energy, forces, stress)) in enumerate(zip(records, frames)):
        row = db.get(id=rec.metadata["row_id"])
        assert float(row.data["energy"][0]) == energy
        assert rec.energy == pytest.approx(energy * kcal, rel=1e-12)
        np.testing.assert_allclose(rec.forces, row.data["forces"] * kcal, rtol=1e-12)
        sym = (stress + stress.T) / 2
        np.testing.assert_allclose(
            rec.stress, [sym[0, 0], sym[1, 1], sym[2, 2], sym[1, 2], sym[0, 2], sym[0, 1]], rtol=1e-12
        )
        assert rec.metadata["stress_asymmetry"] == pytest.approx(0.5e-5 * (i + 1), rel=1e-6)
        assert rec.metadata["energy_source_key"] == "data.energy"
        assert rec.metadata["declared_units"] == {
            "energy": "kcal/mol",
            "forces": "kcal/mol/Ang",
            "stress": "eV/Ang/Ang/Ang",
        }


def _charged_clusters_db(path: Path, rows: int = 4, spin_in: str = "data") -> list[tuple[float, np.ndarray]]:
    """A SchNetPack ``ASEAtomsData``-layout database of charged clusters whose
    ``spin_multiplicity`` is 0.0 ("not set"), as in a real public one; returns (energy, forces)."""
    rng = np.random.default_rng(3)
    out = []
    with ase.db.connect(path) as db:
        db.metadata = {
            "_property_unit_dict": {"energy": "eV", "forces": "eV/Ang", "total_charge": "e", "spin_multiplicity": None},
            "_distance_unit": "Ang",
            "atomrefs": {},
        }
        for i in range(rows):
            atoms = Atoms("Na3Cl2", positions=[[0, 0, 0], [2.8, 0, 0], [0, 2.8, 0], [1.4, 1.4, 0.5], [1.4, 1.4, -2.5]])
            atoms.rattle(0.05, seed=i)
            energy, forces = -10.0 - i, rng.normal(0, 0.3, (5, 3))
            data = {"energy": np.array([energy]), "forces": forces, "total_charge": np.array([1.0])}
            kvp = {}
            (data if spin_in == "data" else kvp)["spin_multiplicity"] = np.array([0.0]) if spin_in == "data" else 0.0
            db.write(atoms, data=data, **kvp)
            out.append((energy, forces))
    return out


@pytest.mark.parametrize("spin_in", ["data", "key_value_pairs"])
def test_schnetpack_spin_multiplicity_zero_is_dropped_not_the_structure(tmp_path: Path, spin_in: str) -> None:
    """Issue 17 item 6: spin_multiplicity 0.0 means "not set": spin becomes unknown (None) and is
    noted; the structure, its energy, forces and charge are kept."""
    path = tmp_path / "clusters.db"
    labels = _charged_clusters_db(path, spin_in=spin_in)
    records = read_all("asedb", path, _opts(key_map={"energy": "energy", "forces": "forces"}))
    assert len(records) == len(labels)
    db = ase.db.connect(path)
    for rec, (energy, forces) in zip(sorted(records, key=lambda r: r.source_index), labels):
        row = db.get(id=rec.metadata["row_id"])
        assert rec.spin is None and rec.charge == 1.0
        assert rec.metadata["dropped_labels"] == {"spin": "spin multiplicity 0 < 1"}
        assert (
            rec.metadata["spin_source_key"]
            == f"{spin_in if spin_in == 'data' else 'key_value_pairs'}.spin_multiplicity"
        )
        assert rec.energy == energy
        np.testing.assert_allclose(rec.forces, forces, atol=0)
        np.testing.assert_allclose(rec.positions, row.positions, atol=0)


def test_bad_optional_values_in_rows_do_not_cost_the_row(tmp_path: Path) -> None:
    """A non-numeric charge, a NaN spin and magmoms of the wrong length used to raise (or be
    ignored silently); each is now dropped and named."""
    path = tmp_path / "odd.db"
    with ase.db.connect(path) as db:
        atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0, magmoms=np.array([0.5, 0.5]))
        db.write(atoms, spin=float("nan"), data={"total_charge": "unknown"})
        db.write(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), spin=2.0, data={"magmoms": np.ones(3)})
    first, second = sorted(read_all("asedb", path, _opts(key_map={"magmoms": "magmoms"})), key=lambda r: r.source_index)
    assert first.energy == -1.0 and first.charge is None and first.spin is None
    assert first.metadata["dropped_labels"] == {
        "charge": "charge 'unknown' is not a number",
        "spin": "spin nan is not finite",
    }
    np.testing.assert_allclose(first.magmoms, [0.5, 0.5])
    assert second.spin == 2 and type(second.spin) is int and second.magmoms is None
    assert second.metadata["dropped_labels"] == {"magmoms": "magmoms shape (3,), expected (2,)"}


def test_a_damaged_row_costs_only_itself(tmp_path: Path) -> None:
    """Found by the reader fuzzer: a row whose JSON or blob ase.db cannot decode stopped the whole
    partition (JSONDecodeError, TypeError, sqlite3 errors escaped). Now that row is quarantined
    with the row id and the rows after it are still read."""
    import sqlite3

    path = tmp_path / "damaged.db"
    with ase.db.connect(path) as db:
        for i in range(4):
            atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7 + 0.01 * i]])
            atoms.calc = SinglePointCalculator(atoms, energy=-1.0 - i)
            db.write(atoms, tag=i)
    con = sqlite3.connect(path)
    con.execute("UPDATE systems SET key_value_pairs = '{\"tag\": 1,' WHERE id = 2")  # cut-off JSON
    con.commit()
    con.close()
    part = asedb.partitions(path, 10)[0]
    items = list(asedb.read(part, _opts()))
    assert len(items) == 4
    assert [getattr(i, "energy", None) for i in items] == [-1.0, None, -3.0, -4.0]
    bad = items[1]
    assert bad.source_index == 1 and bad.reason.startswith("parse:row id 2 cannot be decoded by ase.db")
    assert bad.source_id == "damaged.db:2" and bad.detail == {"row_id": 2}
