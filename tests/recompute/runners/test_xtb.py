"""tblite runner: energies, forces and stress equal tblite's own ASE calculator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from omni_data.recompute import jobs
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.local import run_jobs
from omni_data.recompute.protocols import load_protocol
from omni_data.safeio import safe_name
from omni_data.schema import Record


def test_tblite_matches_ase_calculator(
    sic_record: Record, methane_record: Record, tmp_path: Path, shared_data: Path, optional
) -> None:
    optional("tblite", "dft")
    from tblite.ase import TBLite
    from threadpoolctl import threadpool_limits

    for method, name, recs in (
        ("gfn2-xtb", "GFN2-xTB", [sic_record, methane_record]),
        ("gfn1-xtb", "GFN1-xTB", [methane_record]),
    ):
        root = tmp_path / method
        emit_records([(r, Source(r.id)) for r in recs], load_protocol(method), root)
        results = run_jobs(root, threads=1)
        assert all(r["state"] == "done" for r in results), results
        for rec in recs:
            job = root / safe_name(rec.id)
            res = json.loads((job / "results.json").read_text())
            arrays = np.load(job / "results.npz")
            atoms = read(shared_data / "structures" / "poscar" / "dpdata_SiC.POSCAR") if rec.cell is not None else None
            if atoms is None:
                from ase import Atoms

                atoms = Atoms(numbers=rec.numbers, positions=rec.positions)
            atoms.calc = TBLite(method=name, verbosity=0, charge=0, multiplicity=1)
            with threadpool_limits(limits=1):
                atoms.get_potential_energy()
            assert res["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
            assert np.allclose(arrays["forces"], atoms.get_forces(), atol=1e-6)
            if rec.cell is not None:
                assert np.allclose(arrays["stress"], atoms.get_stress(), atol=1e-7)
            else:
                assert "stress" not in arrays.files
            assert res["method"] == name and res["converged"] is True and res["versions"]["tblite"]
            assert res["wall_time_s"] > 0 and jobs.job_state(job).state == "done"
