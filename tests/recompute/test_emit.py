"""emit: VASP job dirs for real structures, checked against pymatgen's own input sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from ase.io import read
from pymatgen.core import Structure
from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar
from pymatgen.io.vasp.sets import MatPESStaticSet, MPStaticSet

from omni_data.recompute import jobs
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.protocols import load_protocol
from omni_data.safeio import safe_name
from omni_data.schema import Record


def periodic_record(path: Path, rid: str) -> Record:
    atoms = read(path)
    return Record(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        pbc=atoms.pbc,
        id=rid,
        dataset=rid.split(":")[0],
        task="mpa",
    )


def pymatgen_structure(path: Path) -> Structure:
    s = Structure.from_file(path)
    s.remove_oxidation_states()  # our records carry no oxidation states
    return s


def emit_one(record: Record, protocol: str, root: Path) -> Path:
    rows = emit_records([(record, Source(record.id, source_task=record.task))], load_protocol(protocol), root)
    assert rows[0]["status"] == "pending", rows[0]
    return root / safe_name(record.id)


@pytest.mark.parametrize(
    "name, element, u",
    [
        ("chgnet_mp-18767-LiMnO2.cif", "Mn", 3.9),
        ("chgnet_mp-1175469-Li9Co7O16.cif", "Co", 3.32),
    ],
)
def test_mp_static_oxide_plus_u_matches_pymatgen(
    shared_data: Path, tmp_path: Path, name: str, element: str, u: float
) -> None:
    path = shared_data / "structures" / "cif" / name
    job = emit_one(periodic_record(path, f"mpa:{name}"), "mp-pbe-static", tmp_path)
    expected = MPStaticSet(pymatgen_structure(path))
    incar = Incar.from_file(job / "INCAR")
    assert incar == expected.incar
    assert Kpoints.from_file(job / "KPOINTS").kpts == expected.kpoints.kpts
    # hand-known MP values: ENCUT 520, static, +U on the transition metal of an oxide
    assert incar["ENCUT"] == 520 and incar["NSW"] == 0 and incar["LDAU"] is True
    symbols = Poscar.from_file(job / "POSCAR").site_symbols
    assert dict(zip(symbols, incar["LDAUU"]))[element] == pytest.approx(u)
    assert (job / "POTCAR.spec").read_text().split() == expected.potcar_symbols
    got = Poscar.from_file(job / "POSCAR").structure
    assert got.composition == expected.structure.composition
    assert got.lattice.abc == pytest.approx(expected.structure.lattice.abc, abs=1e-4)


def test_magnetic_feo_from_vasprun_gets_mp_magmoms(shared_data: Path, tmp_path: Path) -> None:
    atoms = read(shared_data / "vasp" / "custodian_postprocess_ggau_spin_relax.vasprun.xml", index=0)
    rec = Record(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        pbc=atoms.pbc,
        id="mpa:FeO",
        dataset="mpa",
        task="mpa",
    )
    job = emit_one(rec, "mp-pbe-static", tmp_path)
    incar = Incar.from_file(job / "INCAR")
    symbols = Poscar.from_file(job / "POSCAR").structure.species
    magmom = dict(zip([str(s) for s in symbols], incar["MAGMOM"]))
    assert incar["ISPIN"] == 2 and magmom["Fe"] == 5.0 and magmom["O"] == 0.6  # MPRelaxSet.yaml MAGMOM
    assert dict(zip(Poscar.from_file(job / "POSCAR").site_symbols, incar["LDAUU"]))["Fe"] == 5.3
    assert incar == MPStaticSet(Poscar.from_file(job / "POSCAR").structure).incar


def test_mof_matches_pymatgen(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "structures" / "cif" / "fairchem_odac_mof_BIMDIL.cif"
    job = emit_one(periodic_record(path, "odac:BIMDIL"), "mp-pbe-static", tmp_path)
    expected = MPStaticSet(pymatgen_structure(path))
    assert Incar.from_file(job / "INCAR") == expected.incar
    assert Kpoints.from_file(job / "KPOINTS").kpts == expected.kpoints.kpts
    assert len(Poscar.from_file(job / "POSCAR").structure) == len(read(path))


def test_r2scan_matches_matpes(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "structures" / "cif" / "chgnet_mp-18767-LiMnO2.cif"
    job = emit_one(periodic_record(path, "mpa:LiMnO2"), "r2scan-static", tmp_path)
    expected = MatPESStaticSet(pymatgen_structure(path), xc_functional="R2SCAN")
    incar = Incar.from_file(job / "INCAR")
    assert incar == expected.incar
    assert incar["METAGGA"].lower() == "r2scan" and incar["ENCUT"] == 680 and incar["KSPACING"] == 0.22
    assert not (job / "KPOINTS").exists()  # KSPACING drives the mesh


def test_molecule_is_boxed_gamma_only(shared_data: Path, tmp_path: Path) -> None:
    atoms = read(shared_data / "structures" / "poscar" / "mace_x23_benzene_molecule.POSCAR")
    rec = Record(
        numbers=atoms.numbers,
        positions=atoms.positions,
        id="omol:benzene",
        dataset="omol",
        task="omol",
        charge=0.0,
        spin=1,
    )  # a molecule record: no cell, no pbc
    for protocol, encut in (("mp-pbe-static", 520), ("r2scan-static", 680)):
        job = emit_one(rec, protocol, tmp_path / protocol)
        incar = Incar.from_file(job / "INCAR")
        assert incar["ISPIN"] == 1 and "MAGMOM" not in incar and "NUPDOWN" not in incar
        assert incar["ISMEAR"] == 0 and incar["SIGMA"] == 0.01 and "KSPACING" not in incar
        assert incar["ENCUT"] == encut
        kp = Kpoints.from_file(job / "KPOINTS")
        assert kp.style == Kpoints.supported_modes.Gamma and tuple(kp.kpts[0]) == (1, 1, 1)
        s = Poscar.from_file(job / "POSCAR").structure
        extent = (atoms.positions.max(0) - atoms.positions.min(0)).max()
        assert s.lattice.abc == pytest.approx((extent + 20.0,) * 3)
        cart = s.cart_coords
        assert (cart.min(0) >= 10.0 - 1e-6).all() and (cart.max(0) <= extent + 10.0 + 1e-6).all()
        # same interatomic distances as the source molecule
        d_src = np.sort(atoms.get_all_distances(mic=False).ravel())
        d_got = np.sort(np.linalg.norm(cart[:, None] - cart[None], axis=-1).ravel())
        assert d_got == pytest.approx(d_src, abs=1e-6)


def test_molecule_spin_and_charge_policy(shared_data: Path, tmp_path: Path) -> None:
    atoms = read(shared_data / "structures" / "poscar" / "mace_x23_benzene_molecule.POSCAR")
    base = dict(numbers=atoms.numbers, positions=atoms.positions, dataset="omol", task="omol")
    triplet = Record(id="omol:triplet", charge=0.0, spin=3, **base)
    cation = Record(id="omol:cation", charge=1.0, spin=2, **base)
    impossible = Record(id="omol:odd", charge=0.0, spin=2, **base)  # 42 electrons cannot be a doublet
    rows = emit_records(
        [(r, Source(r.id)) for r in (triplet, cation, impossible)], load_protocol("mp-pbe-static"), tmp_path
    )
    by_id = {r["record_id"]: r for r in rows}
    assert by_id["omol:triplet"]["status"] == "pending"
    incar = Incar.from_file(tmp_path / safe_name("omol:triplet") / "INCAR")
    assert incar["ISPIN"] == 2 and incar["NUPDOWN"] == 2
    assert by_id["omol:cation"]["status"] == "refused" and "charged" in by_id["omol:cation"]["reason"]
    assert by_id["omol:odd"]["status"] == "refused" and "multiplicity" in by_id["omol:odd"]["reason"]
    assert not (tmp_path / safe_name("omol:cation")).exists()
    table = pq.read_table(tmp_path / "jobs.parquet").to_pydict()
    assert table["record_id"] == ["omol:triplet", "omol:cation", "omol:odd"]
    assert table["status"] == ["pending", "refused", "refused"]


def test_job_json_names_and_reemit_keeps_done(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "structures" / "poscar" / "dpdata_SiC.POSCAR"
    rid = "mpa:../../evil; rm -rf $HOME"
    rec = periodic_record(path, rid)
    job = emit_one(rec, "gfn2-xtb", tmp_path)
    assert job.parent == tmp_path and job.name == safe_name(rid) and "/" not in job.name and ";" not in job.name
    meta = json.loads((job / "job.json").read_text())
    assert meta["record_id"] == rid and meta["protocol"] == "gfn2-xtb" and meta["status"] == "pending"
    assert meta["engine"] == "tblite" and meta["source_task"] == "mpa"
    back = jobs.read_record(job)
    assert np.allclose(back.positions, rec.positions) and (back.numbers == rec.numbers).all()
    assert jobs.job_state(job).state == "pending"
    jobs.mark_done(job)
    (job / "results.json").write_text("{}")
    rows = emit_records([(rec, Source(rid))], load_protocol("gfn2-xtb"), tmp_path)
    assert rows[0]["status"] == "done" and (job / "results.json").exists()
    rows = emit_records([(rec, Source(rid))], load_protocol("gfn2-xtb"), tmp_path, force=True)
    assert rows[0]["status"] == "pending" and not (job / "results.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_use_record_magmoms(shared_data: Path, tmp_path: Path) -> None:
    atoms = read(shared_data / "vasp" / "custodian_postprocess_ggau_spin_relax.vasprun.xml", index=0)
    moms = np.where(atoms.numbers == 26, 3.7, 0.1)
    rec = Record(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        pbc=atoms.pbc,
        id="mpa:FeO-afm",
        dataset="mpa",
        task="mpa",
        magmoms=moms,
    )
    proto = tmp_path / "own-magmoms.yaml"
    proto.write_text("PARENT: mp-pbe-static\nvasp:\n  use_record_magmoms: true\n")
    protocol = load_protocol(proto)
    assert protocol.vasp.input_set == "MPStaticSet" and protocol.vasp.use_record_magmoms
    emit_records([(rec, Source(rec.id))], protocol, tmp_path / "jobs")
    job = tmp_path / "jobs" / safe_name(rec.id)
    incar = Incar.from_file(job / "INCAR")
    species = [str(s) for s in Poscar.from_file(job / "POSCAR").structure.species]
    assert sorted(zip(species, incar["MAGMOM"])) == [("Fe", 3.7), ("Fe", 3.7), ("O", 0.1), ("O", 0.1)]


def test_duplicate_selection_is_an_error(shared_data: Path, tmp_path: Path) -> None:
    rec = periodic_record(shared_data / "structures" / "poscar" / "dpdata_SiC.POSCAR", "mpa:SiC")
    with pytest.raises(ValueError, match="selected twice"):
        emit_records([(rec, Source(rec.id)), (rec, Source(rec.id))], load_protocol("gfn2-xtb"), tmp_path)
