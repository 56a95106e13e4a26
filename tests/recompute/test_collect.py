"""collect: real VASP outputs in job dirs get the right verdict; good ones land in the store."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from omni_data.recompute import jobs
from omni_data.recompute.collect import collect, collect_to_store
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.protocols import load_protocol
from omni_data.safeio import safe_name
from omni_data.schema import Record

# file -> expected verdict: None = stored, else the reason's prefix (see PROVENANCE.md for each file).
# Each job's protocol is one the run really matches (PROTOCOLS; else mp-pbe-static), so these
# verdicts are about the output's state; test_verify.py covers outputs of another protocol.
PROTOCOLS = {
    "custodian_postprocess_ggau_spin_relax.vasprun.xml": "PARENT: vasp-base\ntask: mpa\nvasp:\n  input_set: MPRelaxSet\n  set_kwargs: {user_potcar_settings: {Fe: Fe}}\n"
    "  incar: {LDAUU: {O: {Fe: 4.0}}}\n  kpoints: {reciprocal_density: 0.5}\n",
    "custodian_lobster_v51_static_nonspin.vasprun.xml": "PARENT: mp-pbe-static\nvasp:\n  incar: {ENCUT: 500, ISPIN: 1, EDIFF: 1.0e-6}\n",
    "custodian_unconverged_scan_static.vasprun.xml": "PARENT: mp-pbe-static\nvasp:\n  set_kwargs: {user_potcar_settings: {Bi: Bi}}\n"
    "  incar: {METAGGA: Scan, EDIFF: 1.0e-5}\n  kpoints: {reciprocal_density: 50}\n",
}
CASES = {
    "custodian_bad_vasprun_truncated_ggau.vasprun.xml": "parse:truncated",
    "custodian_large_cell_truncated_no_steps.vasprun.xml": "parse:truncated",
    "custodian_unconverged_scan_static.vasprun.xml": "unconverged:electronic",
    "custodian_postprocess_ggau_spin_relax.vasprun.xml": None,
    "custodian_lobster_v51_static_nonspin.vasprun.xml": None,
}


def make_jobs(shared_data: Path, root: Path) -> dict[str, Path]:
    """One emitted job per VASP output (its matching protocol), with that output copied in as vasprun.xml."""
    dirs = {}
    for name in CASES:
        protocol: str | Path = "mp-pbe-static"
        if name in PROTOCOLS:
            protocol = root.parent / f"match-{name.split('_')[1]}.yaml"
            protocol.write_text(PROTOCOLS[name])
        try:
            atoms = read(shared_data / "vasp" / name, index=0)
        except Exception:  # the no-steps file has no structure ASE can read: use any real one
            atoms = read(shared_data / "structures" / "poscar" / "dpdata_SiC.POSCAR")
        rec = Record(
            numbers=atoms.numbers,
            positions=atoms.positions,
            cell=atoms.cell.array,
            pbc=atoms.pbc,
            id=f"mpa:{name}",
            dataset="mpa",
            task="mpa",
        )
        emit_records([(rec, Source(rec.id, source_task="mpa"))], load_protocol(protocol), root)
        job = root / safe_name(rec.id)
        shutil.copy(shared_data / "vasp" / name, job / "vasprun.xml")
        jobs.mark_done(job)  # the batch script's view; collect must not trust it blindly
        dirs[name] = job
    return dirs


def test_verdicts_on_real_vasp_outputs(shared_data: Path, tmp_path: Path) -> None:
    dirs = make_jobs(shared_data, tmp_path / "jobs")
    found = collect(tmp_path / "jobs")
    stored = {r.metadata["source_id"]: r for r in found.records}
    rejected = {r.source_id: r for r in found.rejected}
    for name, verdict in CASES.items():
        rid = f"mpa:{name}"
        if verdict is None:
            assert rid in stored, (name, rejected.get(rid))
        else:
            assert rejected[rid].reason.startswith(verdict), (name, rejected[rid].reason)
            state = jobs.job_state(dirs[name])
            assert state.state == "failed" and state.reason.startswith(verdict)
    ggau = stored["mpa:custodian_postprocess_ggau_spin_relax.vasprun.xml"]
    assert ggau.energy == pytest.approx(-28.21851, abs=2e-5)  # final e_fr_energy (ISMEAR -5: no entropy term)
    assert ggau.n_atoms == 4 and sorted(ggau.numbers.tolist()) == [8, 8, 26, 26]
    assert ggau.stress is not None and ggau.forces.shape == (4, 3)
    lobster = stored["mpa:custodian_lobster_v51_static_nonspin.vasprun.xml"]
    assert lobster.energy == pytest.approx(-27.11090, abs=2e-5)
    ase_final = read(shared_data / "vasp" / "custodian_lobster_v51_static_nonspin.vasprun.xml", index=-1)
    assert np.allclose(lobster.forces, ase_final.get_forces(), atol=1e-6)
    assert np.allclose(lobster.stress, ase_final.get_stress(), atol=1e-8)  # ASE sign and eV/Å³
    for rec in stored.values():
        assert rec.task == "bridge" and rec.dataset == "bridge"
        assert rec.metadata["protocol"].startswith("match-") and rec.metadata["source_task"] == "mpa"
        assert rec.id == f"bridge:{rec.metadata['protocol']}/{rec.metadata['source_id']}"


def test_collect_to_store_once(shared_data: Path, tmp_path: Path) -> None:
    from omni_data.store import Store

    make_jobs(shared_data, tmp_path / "jobs")
    found, shard = collect_to_store(tmp_path / "jobs", tmp_path / "store")
    assert shard is not None and len(found.records) == 2 and len(found.rejected) == 3
    store = Store(tmp_path / "store")
    assert len(store) == 2
    rec = store.get("bridge:match-lobster/mpa:custodian_lobster_v51_static_nonspin.vasprun.xml")
    assert rec.task == "bridge" and rec.metadata["source_id"] == "mpa:custodian_lobster_v51_static_nonspin.vasprun.xml"
    assert rec.energy == pytest.approx(-27.11090, abs=2e-5)
    reasons = sorted(store.quarantine().to_pydict()["reason"])
    assert [r.split(" ")[0] for r in reasons] == ["parse:truncated", "parse:truncated", "unconverged:electronic"]
    again, shard2 = collect_to_store(tmp_path / "jobs", tmp_path / "store")
    assert shard2 is None and not again.records and not again.rejected  # nothing collected twice
    assert len(Store(tmp_path / "store")) == 2


def test_pending_jobs_are_not_ready(shared_data: Path, tmp_path: Path) -> None:
    atoms = read(shared_data / "structures" / "poscar" / "dpdata_SiC.POSCAR")
    rec = Record(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        pbc=atoms.pbc,
        id="mpa:SiC",
        dataset="mpa",
        task="mpa",
    )
    emit_records([(rec, Source(rec.id))], load_protocol("mp-pbe-static"), tmp_path)
    found = collect(tmp_path)
    assert found.not_ready == {safe_name("mpa:SiC"): "pending"} and not found.records and not found.rejected


def test_ionic_verdicts(shared_data: Path, tmp_path: Path) -> None:
    from omni_data.recompute.collect import vasprun_verdict

    # the +U relaxation stopped after 28 of NSW=99 steps: converged. The same file with NSW set to
    # 28 (text edit of the <i name="NSW"> parameter) is a relaxation that ran out of steps.
    src = shared_data / "vasp" / "custodian_postprocess_ggau_spin_relax.vasprun.xml"
    assert vasprun_verdict(src)[1] is None
    text = src.read_text()
    assert text.count('<i type="int" name="NSW">    99</i>') == 2
    edited = tmp_path / "vasprun.xml"
    edited.write_text(text.replace('<i type="int" name="NSW">    99</i>', '<i type="int" name="NSW">    28</i>'))
    assert vasprun_verdict(edited)[1].startswith("unconverged:ionic")
    # an MD run (IBRION 0) that used all NSW steps is not an unconverged relaxation
    assert vasprun_verdict(shared_data / "vasp" / "dpdata_h2o_md.vasprun.xml")[1] is None
    assert vasprun_verdict(tmp_path / "missing.xml")[1].startswith("missing:")


def test_boxed_molecule_comes_back_non_periodic(shared_data: Path, tmp_path: Path) -> None:
    # two water molecules as a cluster record (no cell); VASP output: the dpdata H2O MD vasprun
    src = shared_data / "vasp" / "dpdata_h2o_md.vasprun.xml"
    first = read(src, index=0)
    rec = Record(
        numbers=first.numbers, positions=first.positions, id="w:dimer", dataset="w", task="w", charge=0.0, spin=1
    )
    # the settings that MD run used (ENCUT 800, NSW 3 MD steps, EDIFF 1e-6); the box makes it Γ-only
    (tmp_path / "h2o-md.yaml").write_text(
        "PARENT: mp-pbe-static\nvasp:\n  incar: {ENCUT: 800, NSW: 3, IBRION: 0, EDIFF: 1.0e-6}\n"
    )
    emit_records([(rec, Source(rec.id, source_task="w"))], load_protocol(tmp_path / "h2o-md.yaml"), tmp_path / "jobs")
    tmp_path = tmp_path / "jobs"
    job = tmp_path / safe_name(rec.id)
    shutil.copy(src, job / "vasprun.xml")
    found = collect(tmp_path)
    (got,) = found.records
    last = read(src, index=-1)
    assert got.cell is None and not got.pbc.any() and got.stress is None and got.metadata["boxed_molecule"]
    assert got.energy == pytest.approx(-28.46658, abs=2e-5)
    assert np.allclose(got.forces, last.get_forces(), atol=1e-6)
    assert got.spin == 1 and got.charge == 0.0


def test_composition_mismatch_is_rejected(shared_data: Path, tmp_path: Path) -> None:
    atoms = read(shared_data / "structures" / "poscar" / "dpdata_SiC.POSCAR")
    rec = Record(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        pbc=atoms.pbc,
        id="mpa:SiC",
        dataset="mpa",
        task="mpa",
    )
    emit_records([(rec, Source(rec.id))], load_protocol("mp-pbe-static"), tmp_path)
    shutil.copy(
        shared_data / "vasp" / "custodian_lobster_v51_static_nonspin.vasprun.xml",
        tmp_path / safe_name(rec.id) / "vasprun.xml",
    )
    found = collect(tmp_path)
    assert not found.records and found.rejected[0].reason.startswith("bad_value:output composition")


def test_magmoms_from_outcar(shared_data: Path, tmp_path: Path) -> None:
    dirs = make_jobs(shared_data, tmp_path)
    ggau = dirs["custodian_postprocess_ggau_spin_relax.vasprun.xml"]
    shutil.copy(shared_data / "vasp" / "custodian_postprocess_ggau_spin_relax.OUTCAR", ggau / "OUTCAR")
    lobster = dirs["custodian_lobster_v51_static_nonspin.vasprun.xml"]
    shutil.copy(shared_data / "vasp" / "custodian_postprocess_ggau_spin_relax.OUTCAR", lobster / "OUTCAR")  # wrong run
    found = collect(tmp_path)
    got = {r.metadata["source_id"]: r for r in found.records}
    feo = got["mpa:custodian_postprocess_ggau_spin_relax.vasprun.xml"]
    ase_last = read(shared_data / "vasp" / "custodian_postprocess_ggau_spin_relax.OUTCAR", index=-1)
    assert feo.metadata["magmoms_source"] == "OUTCAR"
    assert np.allclose(feo.magmoms, ase_last.get_magnetic_moments(), atol=1e-3)
    nacl = got["mpa:custodian_lobster_v51_static_nonspin.vasprun.xml"]
    assert nacl.magmoms is None and "does not match" in nacl.metadata["magmoms_source"]
