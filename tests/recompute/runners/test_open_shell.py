"""Charge and spin come from the record (issue 19, item 3): O2 and CH2 triplets computed as triplets.

References are tblite's ASE calculator and PySCF run directly at the same multiplicity. Geometries
by hand: O2 at its experimental bond length 1.2075 Å; triplet CH2 (3B1) with C-H 1.077 Å and
H-C-H 133.9° (experimental r0 structure).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omni_data.recompute import jobs
from omni_data.recompute.collect import collect
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.local import run_jobs
from omni_data.recompute.molecules import Refused
from omni_data.recompute.protocols import load_protocol
from omni_data.recompute.runners.result import resolve_charge_spin
from omni_data.safeio import safe_name
from omni_data.schema import Record

HARTREE_EV, BOHR_A = 27.211386024367243, 0.5291772105638411


def o2(rid: str, spin: int | None = None, magmoms: list[float] | None = None) -> Record:
    return Record(
        numbers=np.array([8, 8]),
        positions=np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.2075]]),
        id=rid,
        dataset="mol",
        task="mol",
        charge=0.0,
        spin=spin,
        magmoms=None if magmoms is None else np.array(magmoms),
    )


def ch2(rid: str, spin: int | None = 3) -> Record:
    half = np.deg2rad(133.9 / 2)
    r = 1.077
    pos = np.array(
        [[0.0, 0.0, 0.0], [r * np.sin(half), 0.0, r * np.cos(half)], [-r * np.sin(half), 0.0, r * np.cos(half)]]
    )
    return Record(numbers=np.array([6, 1, 1]), positions=pos, id=rid, dataset="mol", task="mol", charge=0.0, spin=spin)


def test_resolve_charge_spin_order() -> None:
    assert resolve_charge_spin(o2("a", spin=3)).multiplicity == 3
    from_moments = resolve_charge_spin(o2("b", magmoms=[0.98, 1.01]))
    assert (from_moments.multiplicity, from_moments.source) == (3, "magmoms") and not from_moments.warnings
    # sum 1.2 rounds to 1 unpaired electron, impossible with 16 electrons: 2 unpaired is nearer than 0
    odd = resolve_charge_spin(o2("c", magmoms=[0.6, 0.6]))
    assert odd.multiplicity == 3 and "nearest allowed" in odd.warnings[0]
    assert resolve_charge_spin(o2("c", magmoms=[0.3, 0.3])).multiplicity == 1  # 0.6: 0 unpaired is nearer
    bare = resolve_charge_spin(o2("d"))
    assert (bare.multiplicity, bare.source) == (
        1,
        "electron_count",
    ) and "lowest allowed by 16 electrons" in bare.warnings[0]
    with pytest.raises(Refused, match="multiplicity 2 impossible with 16 electrons"):
        resolve_charge_spin(o2("e", spin=2))
    no_charge = Record(numbers=np.array([1]), positions=np.zeros((1, 3)), id="h", dataset="m", task="m")
    assert resolve_charge_spin(no_charge).multiplicity == 2 and "neutral" in resolve_charge_spin(no_charge).warnings[0]


def test_xtb_triplets_match_tblite(tmp_path: Path, optional) -> None:
    optional("tblite", "dft")
    from ase import Atoms
    from tblite.ase import TBLite
    from threadpoolctl import threadpool_limits

    recs = [o2("o2:spin", spin=3), o2("o2:moments", magmoms=[1.0, 1.0]), o2("o2:bare"), ch2("ch2:spin")]
    emit_records([(r, Source(r.id)) for r in recs], load_protocol("gfn1-xtb"), tmp_path)
    assert all(r["state"] == "done" for r in run_jobs(tmp_path, threads=1))
    direct = {}
    for rec, mult in ((recs[0], 3), (recs[0], 1), (recs[3], 3)):
        atoms = Atoms(numbers=rec.numbers, positions=rec.positions)
        atoms.calc = TBLite(method="GFN1-xTB", verbosity=0, charge=0, multiplicity=mult)
        with threadpool_limits(limits=1):
            direct[(rec.id[:3], mult)] = (atoms.get_potential_energy(), atoms.get_forces())
    res = {r.id: json.loads((tmp_path / safe_name(r.id) / "results.json").read_text()) for r in recs}
    for rid in ("o2:spin", "o2:moments"):
        assert res[rid]["multiplicity"] == 3
        assert res[rid]["energy"] == pytest.approx(direct[("o2:", 3)][0], abs=1e-6)
        assert np.allclose(
            np.load(tmp_path / safe_name(rid) / "results.npz")["forces"], direct[("o2:", 3)][1], atol=1e-6
        )
    assert res["o2:spin"]["spin_source"] == "record" and res["o2:moments"]["spin_source"] == "magmoms"
    assert res["ch2:spin"]["energy"] == pytest.approx(direct[("ch2", 3)][0], abs=1e-6)
    # no spin information: singlet, but loudly so (results.json, job.json, the bridge record)
    assert res["o2:bare"]["multiplicity"] == 1 and res["o2:bare"]["energy"] == pytest.approx(
        direct[("o2:", 1)][0], abs=1e-6
    )
    assert abs(direct[("o2:", 1)][0] - direct[("o2:", 3)][0]) > 0.05  # GFN1: 72 meV, not a rounding error
    job = jobs.read_job(tmp_path / safe_name("o2:bare"))
    assert job["spin_source"] == "electron_count" and "lowest allowed by 16 electrons" in job["warnings"][0]
    found = collect(tmp_path)
    got = {r.metadata["source_id"]: r for r in found.records}
    assert got["o2:spin"].spin == 3 and got["o2:moments"].spin == 3 and got["o2:bare"].spin == 1
    assert "lowest allowed" in got["o2:bare"].metadata["warnings"] and got["o2:spin"].metadata["warnings"] == ""
    assert got["o2:spin"].metadata["code_version"].startswith("tblite ")


def test_result_at_wrong_multiplicity_is_quarantined(tmp_path: Path, optional) -> None:
    optional("tblite", "dft")
    rec = o2("o2:spin", spin=3)
    emit_records([(rec, Source(rec.id))], load_protocol("gfn1-xtb"), tmp_path)
    run_jobs(tmp_path, threads=1)
    path = tmp_path / safe_name(rec.id) / "results.json"
    res = json.loads(path.read_text())
    res["multiplicity"] = 1  # what the old runner wrote for a triplet without checking
    path.write_text(json.dumps(res))
    found = collect(tmp_path)
    assert not found.records and found.rejected[0].reason == "protocol_mismatch:multiplicity 1 != 3"


def test_pyscf_triplet_ch2_matches_direct_uks(tmp_path: Path, optional) -> None:
    optional("pyscf", "dft")
    from pyscf import dft, gto
    from threadpoolctl import threadpool_limits

    small = tmp_path / "pbe-sto3g.yaml"
    small.write_text("PARENT: pyscf-pbe-def2svp\nmethod:\n  name: PBE/STO-3G\n  options: {basis: sto-3g}\n")
    rec = ch2("ch2:triplet")
    emit_records([(rec, Source(rec.id))], load_protocol(small), tmp_path / "jobs")
    assert [r["state"] for r in run_jobs(tmp_path / "jobs", threads=1)] == ["done"]
    res = json.loads((tmp_path / "jobs" / safe_name(rec.id) / "results.json").read_text())
    mol = gto.M(
        atom=[(int(z), tuple(p)) for z, p in zip(rec.numbers, rec.positions)],
        basis="sto-3g",
        unit="Angstrom",
        spin=2,
        verbose=0,
    )
    mf = dft.UKS(mol)
    mf.xc, mf.conv_tol, mf.grids.level = "pbe", 1e-9, 3
    with threadpool_limits(limits=1):
        e_ha = mf.kernel()
    assert res["multiplicity"] == 3 and res["info"]["restricted"] is False
    assert res["energy"] == pytest.approx(e_ha * HARTREE_EV, abs=1e-6)
    (got,) = collect(tmp_path / "jobs").records
    assert got.spin == 3 and got.metadata["basis"] == "sto-3g" and got.metadata["xc"] == "pbe"
    # the same result filed under the def2-SVP protocol is another level of theory
    job = jobs.read_job(tmp_path / "jobs" / safe_name(rec.id))
    job["protocol_spec"]["method"]["options"]["basis"] = "def2-svp"
    jobs.write_json_atomic(tmp_path / "jobs" / safe_name(rec.id) / jobs.JOB_FILE, job)
    jobs.clear_markers(tmp_path / "jobs" / safe_name(rec.id))
    jobs.mark_done(tmp_path / "jobs" / safe_name(rec.id))
    found = collect(tmp_path / "jobs")
    assert found.rejected[0].reason == "protocol_mismatch:basis sto-3g != def2-svp"


def test_rerun_of_a_failed_job_keeps_its_failure(tmp_path: Path, optional) -> None:
    optional("tblite", "dft")
    rec = o2("o2:spin", spin=3)
    emit_records([(rec, Source(rec.id))], load_protocol("gfn1-xtb"), tmp_path)
    job = tmp_path / safe_name(rec.id)
    jobs.mark_failed(job, "run:node died")
    assert [r["state"] for r in run_jobs(tmp_path, threads=1)] == ["done"]
    (entry,) = jobs.read_job(job)["history"]
    assert entry["state"] == "failed" and entry["reason"] == "run:node died" and entry["failed_at"]
