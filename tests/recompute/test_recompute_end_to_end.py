"""End to end with the CLI: store -> selection.parquet -> emit-jobs -> run-local -> collect-bridge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ase import Atoms
from ase.io import read

from omni_data.cli.main import main
from omni_data.schema import Record


def source_store(shared_data: Path, store: Path) -> list[Record]:
    from omni_data.store import write_shard

    sic = read(shared_data / "structures" / "poscar" / "dpdata_SiC.POSCAR")
    eth = read(shared_data / "extxyz" / "schnetpack_md17_ethanol_snip_kcalmol.xyz", index=0)
    recs = [
        Record(
            numbers=sic.numbers,
            positions=sic.positions,
            cell=sic.cell.array,
            pbc=sic.pbc,
            id="mpa:SiC",
            dataset="mpa",
            task="mpa",
            energy=-1.0,
        ),
        Record(
            numbers=eth.numbers,
            positions=eth.positions,
            id="md17:ethanol-0",
            dataset="md17",
            task="md17",
            charge=0.0,
            spin=1,
        ),
    ]
    write_shard(store, "src", recs)
    return recs


def test_local_recompute_pipeline(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, optional) -> None:
    optional("tblite", "dft")
    from tblite.ase import TBLite
    from threadpoolctl import threadpool_limits

    from omni_data.store import Store

    recs = source_store(shared_data, tmp_path / "store")
    selection = tmp_path / "selection.parquet"
    pq.write_table(
        pa.table(
            {
                "id": [r.id for r in recs],
                "task": [r.task for r in recs],
                "dataset": [r.dataset for r in recs],
                "store": [str(tmp_path / "store")] * 2,
                "rank": [0, 1],
                "distance": [np.inf, 3.5],
            }
        ),
        selection,
    )
    jobs_dir = tmp_path / "jobs"
    assert main(["emit-jobs", str(selection), "--protocol", "gfn2-xtb", "--out", str(jobs_dir)]) == 0
    assert main(["run-local", str(jobs_dir), "--method", "gfn2-xtb", "--no-cluster"]) == 0
    assert main(["jobs", str(jobs_dir)]) == 0
    out = capsys.readouterr()
    assert "done=2" in out.err and "failed=0" in out.err
    assert main(["collect-bridge", str(jobs_dir), "--out", str(tmp_path / "bridge")]) == 0
    bridge = Store(tmp_path / "bridge")
    assert len(bridge) == 2
    for rec in recs:
        got = bridge.get(f"bridge:gfn2-xtb/{rec.id}")
        assert got.task == "bridge" and got.metadata["source_id"] == rec.id
        assert got.metadata["source_task"] == rec.task and got.metadata["protocol"] == "gfn2-xtb"
        atoms = Atoms(numbers=rec.numbers, positions=rec.positions, cell=rec.cell, pbc=rec.pbc)
        atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
        with threadpool_limits(limits=1):
            energy = atoms.get_potential_energy()
        assert got.energy == pytest.approx(energy, abs=1e-6)
        assert np.allclose(got.forces, atoms.get_forces(), atol=1e-6)
        assert np.allclose(got.positions, rec.positions) and (got.numbers == rec.numbers).all()
        if rec.cell is not None:
            assert np.allclose(got.stress, atoms.get_stress(), atol=1e-7)
    # a second collect adds nothing; re-emitting keeps finished jobs
    assert main(["collect-bridge", str(jobs_dir), "--out", str(tmp_path / "bridge")]) == 0
    assert len(Store(tmp_path / "bridge")) == 2
    assert main(["emit-jobs", str(selection), "--protocol", "gfn2-xtb", "--out", str(jobs_dir)]) == 0
    assert "2 kept" in capsys.readouterr().out


def test_collect_exit_codes(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, optional) -> None:
    optional("tblite", "dft")
    from omni_data.recompute import jobs
    from omni_data.safeio import safe_name

    recs = source_store(shared_data, tmp_path / "store")
    selection = tmp_path / "selection.parquet"
    pq.write_table(pa.table({"id": [r.id for r in recs], "store": [str(tmp_path / "store")] * 2}), selection)
    assert main(["emit-jobs", str(selection), "--protocol", "gfn2-xtb", "--out", str(tmp_path / "a")]) == 0
    jobs.mark_failed(tmp_path / "a" / safe_name("mpa:SiC"), "run:simulated crash")
    assert main(["run-local", str(tmp_path / "a"), "--no-cluster"]) == 0  # pending only: the failed one stays
    assert main(["collect-bridge", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 0
    assert "rejected mpa:SiC: run:simulated crash" in capsys.readouterr().err
    assert main(["jobs", str(tmp_path / "a"), "--reemit-failed"]) == 0
    assert main(["run-local", str(tmp_path / "a"), "--method", "pyscf-pbe-def2svp", "--no-cluster"]) == 1
    # another method than the jobs' protocol is refused before anything runs (collect would refuse it)
    assert "refused:method pyscf-pbe-def2svp is not this job's protocol gfn2-xtb" in capsys.readouterr().err
    assert json.loads((tmp_path / "a" / safe_name("mpa:SiC") / "job.json").read_text())["protocol"] == "gfn2-xtb"
    assert main(["collect-bridge", str(tmp_path / "a"), "--out", str(tmp_path / "b"), "--strict"]) == 1
    assert main(["collect-bridge", str(tmp_path / "nope"), "--out", str(tmp_path / "b")]) == 1


def test_failed_jobs_reemit_and_batch_script(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recs = source_store(shared_data, tmp_path / "store")
    selection = tmp_path / "selection.parquet"
    pq.write_table(pa.table({"id": [r.id for r in recs], "store": [str(tmp_path / "store")] * 2}), selection)
    jobs_dir = tmp_path / "jobs"
    # PySCF refuses the periodic SiC at emit time (reason printed; exit 1 only with --strict)
    assert main(["emit-jobs", str(selection), "--protocol", "pyscf-pbe-def2svp", "--out", str(tmp_path / "p")]) == 0
    assert "molecules only" in capsys.readouterr().err
    assert (
        main(["emit-jobs", str(selection), "--protocol", "pyscf-pbe-def2svp", "--out", str(tmp_path / "p"), "--strict"])
        == 1
    )
    assert main(["emit-jobs", str(selection), "--protocol", "gfn2-xtb", "--out", str(jobs_dir)]) == 0
    from omni_data.recompute import jobs
    from omni_data.safeio import safe_name

    sic_dir = jobs_dir / safe_name("mpa:SiC")
    jobs.mark_failed(sic_dir, "run:simulated crash")
    (sic_dir / "INCAR").write_text("garbage")  # not an xtb input; must vanish on re-emit
    assert main(["jobs", str(jobs_dir), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"state": "failed"' in out and "simulated crash" in out
    assert main(["jobs", str(jobs_dir), "--reemit-failed"]) == 0
    assert jobs.job_state(sic_dir).state == "pending" and not (sic_dir / "INCAR").exists()
    # VASP batch script for unfinished jobs
    vasp_dir = tmp_path / "vasp"
    assert (
        main(
            [
                "emit-jobs",
                str(selection),
                "--protocol",
                "mp-pbe-static",
                "--out",
                str(vasp_dir),
                "--write-script",
                "slurm",
                "--vasp-cmd",
                "srun vasp_std",
                "--per-task",
                "2",
                "--partition",
                "cpu",
            ]
        )
        == 0
    )
    text = (vasp_dir / "submit.slurm").read_text()
    assert "#SBATCH --array=0-0" in text and "#SBATCH --partition=cpu" in text and "VASP_CMD='srun vasp_std'" in text
    from omni_data.recompute.slurm import joblist_of

    assert len(joblist_of(vasp_dir / "submit.slurm").read_text().splitlines()) == 2
    assert main(["emit-jobs", str(tmp_path / "missing.parquet"), "--protocol", "gfn2-xtb", "--out", str(vasp_dir)]) == 1
    assert main(["emit-jobs", str(selection), "--protocol", "nope", "--out", str(vasp_dir)]) == 2
