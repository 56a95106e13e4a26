"""collect-bridge verifies the level of theory (issue 19, item 1) on real VASP outputs.

Each real vasprun.xml is dropped into a job emitted for its own structure. Under mp-pbe-static
(MPStaticSet: PBE, ENCUT 520, ISPIN 2, NSW 0, PREC Accurate, EDIFF 5e-5/atom, MP U values and
POTCARs, 100 k-points/Å⁻³) every one of them is another calculation and must be quarantined with
the parameter and both values named; under a protocol written for the settings the run really
used, the same file is accepted. Values quoted below are read from each file's <incar>/<parameters>.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ase.io import read

from omni_data.recompute import jobs
from omni_data.recompute.collect import collect
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.protocols import load_protocol
from omni_data.safeio import safe_name
from omni_data.schema import Record

FEO = "custodian_postprocess_ggau_spin_relax.vasprun.xml"
NACL = "custodian_lobster_v51_static_nonspin.vasprun.xml"

# file -> (reason prefix, further parts every reason must contain) under mp-pbe-static
WRONG = {
    FEO: (
        "protocol_mismatch:POTCAR Fe Fe != Fe_pv",
        ["LDAUU Fe 4 != 5.3", "NSW 99 != 0 (relaxation where a static was asked for)"],
    ),
    NACL: ("protocol_mismatch:ENCUT 500 != 520; ISPIN 1 != 2", []),
    "custodian_unconverged_scan_static.vasprun.xml": ("protocol_mismatch:METAGGA SCAN != protocol (none: GGA PE)", []),
    "fairchem_oc_27998_rpbe_slab.vasprun.xml": (
        "protocol_mismatch:GGA RP != PE",
        ["ENCUT 350 != 520", "PREC Normal != Accurate", "NSW 200 != 0 (relaxation where a static"],
    ),
    "dpdata_h2o_md.vasprun.xml": (
        "protocol_mismatch:ENCUT 800 != 520",
        ["NSW 3 != 0 (MD where a static was asked for)", "KPOINTS 1x1x1"],
    ),
    "chgnet_nboc_relax_49steps.vasprun.xml": (
        "protocol_mismatch:POTCAR Nb Nb_sv != Nb_pv",
        ["ENCUT 400 != 520", "PREC Normal != Accurate", "KPOINTS 2x2x2 (6272.8/Å⁻³) != 3x3x3"],
    ),
}

# protocols written for the settings each run really used: the same files must be accepted
MATCHING = {
    NACL: (
        "nacl-lobster-static",
        "PARENT: mp-pbe-static\nvasp:\n  incar: {ENCUT: 500, ISPIN: 1, EDIFF: 1.0e-6}\n",
        -27.11090,
    ),
    FEO: (
        "feo-u4-relax",
        "PARENT: vasp-base\ntask: mpa\nvasp:\n  input_set: MPRelaxSet\n  set_kwargs: {user_potcar_settings: {Fe: Fe}}\n"
        "  incar: {LDAUU: {O: {Fe: 4.0}}}\n  kpoints: {reciprocal_density: 0.5}\n",
        -28.21851,
    ),
    "dpdata_h2o_md.vasprun.xml": (
        "h2o-md",
        "PARENT: mp-pbe-static\nvasp:\n  incar: {ENCUT: 800, ISPIN: 1, NSW: 3, IBRION: 0, "
        "EDIFF: 1.0e-6}\n  kpoints: {reciprocal_density: 1}\n",
        -28.46658,
    ),
}


def job_for(shared_data: Path, name: str, protocol: str | Path, root: Path, text: str | None = None) -> Path:
    """Emit ``protocol`` for the structure of ``name`` and drop the output in as vasprun.xml."""
    src = shared_data / "vasp" / name
    atoms = read(src, index=0)
    rec = Record(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        pbc=atoms.pbc,
        id=f"mpa:{name}",
        dataset="mpa",
        task="mpa",
    )
    emit_records([(rec, Source(rec.id, source_task="mpa", dataset="mptrj"))], load_protocol(protocol), root)
    job = root / safe_name(rec.id)
    if text is None:
        shutil.copy(src, job / "vasprun.xml")
    else:
        (job / "vasprun.xml").write_text(text)
    jobs.mark_done(job)
    return job


def test_wrong_protocol_outputs_are_quarantined(shared_data: Path, tmp_path: Path) -> None:
    for name in WRONG:
        job_for(shared_data, name, "mp-pbe-static", tmp_path)
    found = collect(tmp_path)
    assert not found.records
    reasons = {r.source_id: r.reason for r in found.rejected}
    for name, (prefix, parts) in WRONG.items():
        got = reasons[f"mpa:{name}"]
        assert got.startswith(prefix), (name, got)
        assert all(p in got for p in parts), (name, got)
        assert jobs.job_state(tmp_path / safe_name(f"mpa:{name}")).reason == got


def test_r2scan_relaxation_in_a_pbe_static_job(shared_data: Path, tmp_path: Path) -> None:
    # the FeO +U relaxation with METAGGA = R2SCAN added to its <incar>: an r2SCAN relaxation
    text = (shared_data / "vasp" / FEO).read_text()
    tag = '  <i type="string" name="PREC">accurate</i>\n'
    assert text.count(tag) == 1
    r2scan = text.replace(tag, tag + '  <i type="string" name="METAGGA">R2SCAN</i>\n')
    job_for(shared_data, FEO, "mp-pbe-static", tmp_path, r2scan)
    (rej,) = collect(tmp_path).rejected
    assert rej.reason.startswith("protocol_mismatch:METAGGA R2SCAN != protocol (none: GGA PE); ")
    assert "NSW 99 != 0 (relaxation where a static was asked for)" in rej.reason


def test_r2scan_protocol_refuses_other_functionals(shared_data: Path, tmp_path: Path) -> None:
    job_for(shared_data, "custodian_unconverged_scan_static.vasprun.xml", "r2scan-static", tmp_path)
    job_for(shared_data, NACL, "r2scan-static", tmp_path)
    reasons = {r.source_id: r.reason for r in collect(tmp_path).rejected}
    assert reasons["mpa:custodian_unconverged_scan_static.vasprun.xml"].startswith(
        "protocol_mismatch:METAGGA SCAN != R2SCAN"
    )
    assert reasons[f"mpa:{NACL}"].startswith("protocol_mismatch:METAGGA none (GGA PE) != R2SCAN")


def test_matching_outputs_are_accepted(shared_data: Path, tmp_path: Path) -> None:
    for name, (stem, yaml_text, _) in MATCHING.items():
        (tmp_path / f"{stem}.yaml").write_text(yaml_text)
        job_for(shared_data, name, tmp_path / f"{stem}.yaml", tmp_path / "jobs")
    found = collect(tmp_path / "jobs")
    assert not found.rejected, [r.reason for r in found.rejected]
    got = {r.metadata["source_id"]: r for r in found.records}
    for name, (stem, _, energy) in MATCHING.items():
        rec = got[f"mpa:{name}"]
        assert rec.energy == pytest.approx(energy, abs=2e-5)
        assert rec.metadata["protocol"] == stem and rec.metadata["code_version"].startswith("VASP 5.")


def test_tolerances_edges(shared_data: Path, tmp_path: Path) -> None:
    # NaCl ran with EDIFF 1e-8 and a 5x5x5 grid (125 k-points in 1/44.3 Å⁻³ ...): tighter SCF than
    # asked is accepted, looser is not; a protocol asking for a denser grid refuses the 5x5x5 one
    cases = {
        "looser": ("ENCUT: 500, ISPIN: 1, EDIFF: 1.0e-9", None, "protocol_mismatch:EDIFF 1e-08 != 1e-09 (looser SCF"),
        "denser": ("ENCUT: 500, ISPIN: 1", "reciprocal_density: 200", "protocol_mismatch:KPOINTS 5x5x5"),
        "encut": ("ENCUT: 500.4, ISPIN: 1", None, None),  # within ENCUT_TOL_EV
        "prec": ("ENCUT: 500, ISPIN: 1, PREC: Normal", None, "protocol_mismatch:PREC Accurate != Normal"),
        "u": (
            "ENCUT: 500, ISPIN: 1, LDAUU: {Cl: {Na: 2.0}}, LDAUL: {Cl: {Na: 2}}",
            None,
            "protocol_mismatch:LDAU False != True (no +U where the protocol has it)",
        ),
    }
    for label, (incar, kpts, _) in cases.items():
        text = f"PARENT: mp-pbe-static\nvasp:\n  incar: {{{incar}}}\n" + (f"  kpoints: {{{kpts}}}\n" if kpts else "")
        (tmp_path / f"{label}.yaml").write_text(text)
        job_for(shared_data, NACL, tmp_path / f"{label}.yaml", tmp_path / label)
    for label, (_, _, want) in cases.items():
        found = collect(tmp_path / label)
        if want is None:
            assert found.records and not found.rejected, (label, [r.reason for r in found.rejected])
        else:
            assert found.rejected[0].reason.startswith(want), (label, found.rejected[0].reason)


def test_jobs_from_before_expected_settings_use_their_inputs(shared_data: Path, tmp_path: Path) -> None:
    job = job_for(shared_data, NACL, "mp-pbe-static", tmp_path)
    data = jobs.read_job(job)
    del data["expected"]  # a job dir written before job.json recorded the expected settings
    jobs.write_json_atomic(job / jobs.JOB_FILE, data)
    (rej,) = collect(tmp_path).rejected
    assert rej.reason.startswith("protocol_mismatch:ENCUT 500 != 520; ISPIN 1 != 2")


def test_defaults_from_parameters(shared_data: Path, tmp_path: Path) -> None:
    """h2o MD's INCAR sets no ISPIN, GGA, LDAU or IVDW: VASP's defaults from <parameters> count."""
    from omni_data.readers import ReadOptions
    from omni_data.readers.vasp import read_vasprun_final

    scan, rec = read_vasprun_final(
        shared_data / "vasp" / "dpdata_h2o_md.vasprun.xml", ReadOptions(dataset="d", task="t")
    )
    assert "ISPIN" not in scan.incar and scan.setting("ISPIN") == 1 and scan.setting("GGA") == "--"
    assert scan.setting("ENCUT") == 800.0 and scan.kpoints["divisions"] == [1, 1, 1] and scan.n_steps == 3
    assert scan.generator["version"].startswith("5.4.4") and rec.energy == pytest.approx(-28.46658, abs=2e-5)
    assert [t[2].split()[1] for t in scan.atomtypes] == ["O", "H"]
    assert json.dumps(rec.metadata)  # JSON-ready


def test_molecule_spin_state_is_checked(shared_data: Path, tmp_path: Path) -> None:
    # the water pair as a triplet cluster: the protocol fixes ISPIN 2, NUPDOWN 2; the run had neither
    src = shared_data / "vasp" / "dpdata_h2o_md.vasprun.xml"
    first = read(src, index=0)
    rec = Record(
        numbers=first.numbers, positions=first.positions, id="w:triplet", dataset="w", task="w", charge=0.0, spin=3
    )
    (tmp_path / "h2o-md.yaml").write_text(
        "PARENT: mp-pbe-static\nvasp:\n  incar: {ENCUT: 800, NSW: 3, IBRION: 0, EDIFF: 1.0e-6}\n"
    )
    emit_records([(rec, Source(rec.id))], load_protocol(tmp_path / "h2o-md.yaml"), tmp_path / "jobs")
    shutil.copy(src, tmp_path / "jobs" / safe_name(rec.id) / "vasprun.xml")
    (rej,) = collect(tmp_path / "jobs").rejected
    assert rej.reason == "protocol_mismatch:ISPIN 1 != 2; NUPDOWN -1 != 2 (another spin state)"


def test_one_parse_per_file_without_pymatgen(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pymatgen.io.vasp.outputs as outputs

    import omni_data.readers._vasp_xml as vx

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("collect must not parse vasprun.xml with pymatgen")

    monkeypatch.setattr(outputs, "Vasprun", refuse)
    calls = []
    real = vx.scan_vasprun
    monkeypatch.setattr(vx, "scan_vasprun", lambda fh: calls.append(1) or real(fh))
    (tmp_path / "nacl.yaml").write_text(MATCHING[NACL][1])
    job_for(shared_data, NACL, tmp_path / "nacl.yaml", tmp_path / "jobs")
    (rec,) = collect(tmp_path / "jobs").records
    assert calls == [1] and rec.energy == pytest.approx(-27.11090, abs=2e-5)


def test_damaged_numbers_are_a_parse_failure(shared_data: Path, tmp_path: Path) -> None:
    text = (shared_data / "vasp" / NACL).read_text()
    head, rest = text.split('<varray name="forces" >', 1)
    first_v_end = rest.index("</v>")
    damaged = head + '<varray name="forces" >' + rest[: rest.index("<v>") + 3] + " 0.1 zz 0.3 " + rest[first_v_end:]
    (tmp_path / "nacl.yaml").write_text(MATCHING[NACL][1])
    job_for(shared_data, NACL, tmp_path / "nacl.yaml", tmp_path / "jobs", damaged)
    (rej,) = collect(tmp_path / "jobs").rejected
    assert rej.reason.startswith("parse:vasprun.xml damaged (ionic step 0: ValueError")
