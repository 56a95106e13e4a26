"""PySCF runner: energy and forces equal a direct PySCF calculation; periodic input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omni_data.recompute import jobs
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.local import run_jobs
from omni_data.recompute.protocols import load_protocol
from omni_data.safeio import safe_name
from omni_data.schema import Record


def test_pyscf_matches_direct_pyscf(sic_record: Record, methane_record: Record, tmp_path: Path, optional) -> None:
    optional("pyscf", "dft")
    from pyscf import dft, gto

    rec = methane_record
    rows = emit_records(
        [(rec, Source(rec.id)), (sic_record, Source("mpa:SiC"))], load_protocol("pyscf-pbe-def2svp"), tmp_path
    )
    assert [r["status"] for r in rows] == ["pending", "refused"] and "molecules only" in rows[1]["reason"]
    # a job emitted by another protocol and run with --method pyscf is refused before it runs
    emit_records([(sic_record, Source("mpa:SiC"))], load_protocol("gfn2-xtb"), tmp_path)
    results = {r["job"]: r for r in run_jobs(tmp_path, "pyscf-pbe-def2svp", threads=1)}
    periodic = results[safe_name("mpa:SiC")]
    assert periodic["state"] == "failed" and "is not this job's protocol gfn2-xtb" in periodic["reason"]
    assert "is not this job's protocol" in jobs.job_state(tmp_path / safe_name("mpa:SiC")).reason
    job = tmp_path / safe_name(rec.id)
    res = json.loads((job / "results.json").read_text())
    from threadpoolctl import threadpool_limits

    mol = gto.M(
        atom=[(int(z), tuple(p)) for z, p in zip(rec.numbers, rec.positions)],
        basis="def2-svp",
        unit="Angstrom",
        verbose=0,
    )
    mf = dft.RKS(mol)
    mf.xc, mf.conv_tol, mf.grids.level = "pbe", 1e-9, 3
    with threadpool_limits(limits=1):  # 2 shared cores: OpenMP threads only slow this down
        e_ha = mf.kernel()
        grad = mf.nuc_grad_method().kernel()
    hartree_ev, bohr_a = 27.211386024367243, 0.5291772105638411  # CODATA 2014, as ase.units
    assert res["energy"] == pytest.approx(e_ha * hartree_ev, abs=1e-6)
    assert np.allclose(np.load(job / "results.npz")["forces"], -grad * hartree_ev / bohr_a, atol=1e-5)
    assert res["converged"] is True and res["info"]["n_basis"] == mol.nao_nr() and res["versions"]["pyscf"]
