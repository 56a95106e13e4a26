"""The HPC recipe on a real one-node Slurm (slurmctld + slurmd + munged, see conftest.py).

Nothing here is a stand-in: dask-jobqueue submits real worker jobs, the recompute array script
runs under sbatch, `omni-data jobs` asks the real slurmctld. What is not real: VASP (absent here,
so the VASP array runs a `--vasp-cmd` that fails) and GPUs (training runs train.sbatch with 2
CPU processes, gloo, instead of one per GPU).
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pytest

if TYPE_CHECKING:
    from conftest import SlurmTestbed  # tests/pipelines/conftest.py

REPO = Path(__file__).resolve().parents[2]

OMNI = str(Path(sys.executable).parent / "omni-data")
# One core and 1 GB per Dask worker job, two jobs: the whole 2-core node of the CI machine.
DASK_ON_SLURM = ["--slurm", "--cores", "1", "--processes", "1", "--memory", "1GB", "--jobs", "2",
                 "--walltime", "00:10:00"]


def run(cmd: list[str], bed: SlurmTestbed, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` against the testbed (in ``cwd``, default the testbed's dir, where dask-jobqueue's
    worker logs ``slurm-N.out`` land); fail with its output when it exits non-zero."""
    done = subprocess.run(cmd, cwd=cwd or bed.root, env=bed.env(**env), capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done


def job_states(jobs_dir: Path, bed: SlurmTestbed) -> dict[str, dict]:
    """``omni-data jobs DIR --json``, one entry per job dir name."""
    out = run([OMNI, "jobs", str(jobs_dir), "--json"], bed).stdout
    return {d["job"]: d for d in map(json.loads, out.splitlines())}


def wait_for(what: str, check: Callable[[], bool], bed: SlurmTestbed, limit_s: float = 240) -> None:
    """Poll ``check`` until true; on the limit, fail showing the queue and the slurmctld log tail."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(2)
    queue = subprocess.run(["squeue"], env=bed.env(), capture_output=True, text=True, check=False).stdout
    log = (bed.root / "log" / "slurmctld.log").read_text(errors="replace").splitlines()[-15:]
    pytest.fail(f"waited {limit_s:.0f} s for {what}\nsqueue:\n{queue}\nslurmctld.log:\n" + "\n".join(log))


def sbatch(args: list[str], bed: SlurmTestbed, cwd: Path, **env: str) -> str:
    """Submit with sbatch --parsable (the job gets this environment, --export=ALL); returns the job id."""
    return run(["sbatch", "--parsable", *args], bed, cwd=cwd, **env).stdout.strip().split(";")[0]


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def queue_empty(bed: SlurmTestbed) -> bool:
    return run(["squeue", "-h", "-o", "%i"], bed).stdout.strip() == ""


def gfn1_energy(job_dir: Path) -> float:
    """GFN1-xTB energy (eV) of the job's structure from tblite's own ASE calculator."""
    from ase import Atoms
    from tblite.ase import TBLite

    rec = json.loads((job_dir / "record.json").read_text())
    atoms = Atoms(numbers=rec["numbers"], positions=rec["positions"], cell=rec["cell"], pbc=rec["pbc"])
    atoms.calc = TBLite(method="GFN1-xTB", verbosity=0)
    return float(atoms.get_potential_energy())


def test_recipe_end_to_end_on_real_slurm(slurm_testbed: SlurmTestbed, shared_data: Path, tmp_path: Path) -> None:
    bed = slurm_testbed
    store, sel = tmp_path / "store", tmp_path / "selection"
    ethanol = shared_data / "extxyz" / "schnetpack_md17_ethanol_2000frames_kcalmol.extxyz"
    spice = shared_data / "extxyz" / "chemreporter_spice_amino_acid_ligand_26frames.extxyz"

    # 1. ingest on Dask workers that dask-jobqueue starts as Slurm jobs
    out = run([OMNI, "ingest", str(ethanol), "--out", str(store), "--dataset", "md17", "--task", "pbe-ts",
               "--energy-unit", "kcal/mol", "--shard-size", "500", "--no-progress", *DASK_ON_SLURM], bed)
    out = out.stdout + out.stderr
    assert "[slurm]" in out and "records read 2000 = written 2000 + quarantined 0" in out
    run([OMNI, "ingest", str(spice), "--out", str(store), "--dataset", "spice", "--task", "wb97m",
         "--no-progress", "--no-cluster"], bed)
    comp = (bed.root / "jobcomp.txt").read_text()
    assert comp.count("Name=dask-worker") >= 2  # the worker jobs really ran on the scheduler

    # 2. describe + distributed FPS selection, both on Slurm workers
    run([OMNI, "describe", str(store), *DASK_ON_SLURM], bed)
    run([OMNI, "select-bridge", str(store), "--count", "4", "--min-per-task", "2", "--mode", "distributed",
         "--out", str(sel), *DASK_ON_SLURM], bed)
    coverage = json.loads((sel / "coverage.json").read_text())
    assert {task: v["picks"] for task, v in coverage["tasks"].items()} == {"pbe-ts": 2, "wb97m": 2}
    assert coverage["n_points"] == 2026

    # 3. xTB recompute as the Slurm array script (the VASP one, running the local runner per dir)
    jx = tmp_path / "jobs-xtb"
    run([OMNI, "emit-jobs", str(sel / "selection.parquet"), "--protocol", "gfn1-xtb", "--out", str(jx),
         "--write-script", "slurm", "--max-parallel", "2", "--time", "00:10:00", "--batch-opt=--mem=1G"], bed)
    script = (jx / "submit.slurm").read_text()
    assert "#SBATCH --array=0-3%2" in script and "-m omni_data.recompute.slurm run-job ." in script
    assert {d["state"] for d in job_states(jx, bed).values()} == {"pending"}
    xtb_array = sbatch(["submit.slurm"], bed, cwd=jx)

    # 4. the VASP array after it (afterok, as run_corpus.sh chains it), then collect (afterany);
    #    VASP is absent, so the command fails and every job must end failed with that reason
    jv = tmp_path / "jobs-vasp"
    run([OMNI, "emit-jobs", str(sel / "selection.parquet"), "--protocol", "mp-pbe-static", "--out", str(jv)], bed)
    submitted = run([str(REPO / "pipelines" / "slurm" / "submit_vasp_jobs.sh"), str(jv), "false", "2", "--",
                     f"--dependency=afterok:{xtb_array}", "--mem=500M", "--time=00:05:00"], bed,
                    OMNI_COLLECT_STORE=str(tmp_path / "vasp-store"), OMNI_MAX_PARALLEL="1")
    vasp_array = submitted.stdout.strip().splitlines()[-1]
    held = run(["squeue", "-h", "-j", vasp_array, "-o", "%T %r"], bed).stdout.split()
    assert held[:1] == ["PENDING"]  # waits for the xTB array (Dependency), or its turn

    # 5. collect the xTB results into the store (afterok the array), then train on it (afterok
    #    collect): pipelines/slurm/train.sbatch, srun + torchrun with 2 gloo processes on the node
    logs = tmp_path / "logs"
    logs.mkdir()
    collect = sbatch([f"--dependency=afterok:{xtb_array}", "--mem=2G", f"--output={logs}/collect-%j.out",
                      f"--wrap={OMNI} collect-bridge {jx} --out {store} --task bridge-gfn1"], bed, cwd=tmp_path)
    work = tmp_path / "work"
    (work / "train").mkdir(parents=True)
    (work / "train" / "train.yaml").write_text(TRAIN_YAML.format(store=store, out=work / "train"))
    train = sbatch([f"--dependency=afterok:{collect}", "--nodes=1", "--ntasks=1", "--cpus-per-task=2", "--mem=4G",
                    "--gpus-per-node=0", "--time=00:10:00", f"--output={logs}/train-%j.out",
                    str(REPO / "pipelines" / "slurm" / "train.sbatch")], bed, cwd=tmp_path,
                   OMNI_REPO=str(REPO), OMNI_WORK=str(work), OMNI_PROCS_PER_NODE="2", OMNI_MASTER_PORT=free_port())
    wait_for("xTB array, VASP array, both collects and training to leave the queue", lambda: queue_empty(bed), bed,
             limit_s=360)

    xtb = job_states(jx, bed)
    assert {d["state"] for d in xtb.values()} == {"done"}, xtb
    first = sorted(jx.glob("md17*"))[0]
    result = json.loads((first / "results.json").read_text())
    assert result["method"] == "GFN1-xTB" and result["converged"] is True
    assert result["energy"] == pytest.approx(gfn1_energy(first), abs=1e-6)
    assert np.load(first / "results.npz")["forces"].shape == (9, 3)

    vasp = job_states(jv, bed)
    assert len(vasp) == 4 and {d["state"] for d in vasp.values()} == {"failed"}
    assert {d["reason"] for d in vasp.values()} == {"run:VASP command exited with code 1"}
    assert len((jv / "failures.tsv").read_text().splitlines()) == 4
    collect_logs = list((jv / "logs").glob("collect-*.out"))
    assert collect_logs and "4 quarantined" in collect_logs[0].read_text()

    assert "4 record(s)" in (logs / f"collect-{collect}.out").read_text()
    info = run([OMNI, "info", str(store)], bed).stdout
    assert "bridge-gfn1 4" in info and "pbe-ts 2,000" in info and "wb97m 26" in info
    train_log = (logs / f"train-{train}.out").read_text()
    assert "gpus/node=2" in train_log and "done: 3 steps" in train_log
    assert train_log.count("energy references:") == 2  # one line per torchrun process (rank)
    final = work / "train" / "final.pt"
    out = run([str(Path(sys.executable).parent / "omni-train"), "evaluate", str(final), str(store)], bed)
    assert "bridge-gfn1" in out.stdout + out.stderr


TRAIN_YAML = """model: {{channels: 8, lmax: 1, num_layers: 2, cutoff: 4.0, radial_hidden: [8]}}
data: {{store: {store}, batch_size: 4, valid_fraction: 0.25}}
loss: {{task_l2: 0.01}}
optim: {{lr: 0.01, ema_decay: 0.9, warmup_steps: 1}}
run: {{out_dir: {out}, progress: false, checkpoint_every: 2, log_every: 1}}
stages: [{{name: all, steps: 3}}]
"""


def test_cancelled_and_timed_out_jobs_on_real_slurm(slurm_testbed: SlurmTestbed, shared_data: Path,
                                                    tmp_path: Path) -> None:
    bed = slurm_testbed
    store, sel, jf = tmp_path / "store", tmp_path / "sel", tmp_path / "jobs"
    run([OMNI, "ingest", str(shared_data / "extxyz" / "schnetpack_md17_ethanol_2000frames_kcalmol.extxyz"),
         "--out", str(store), "--dataset", "md17", "--task", "pbe-ts", "--energy-unit", "kcal/mol",
         "--no-progress", "--no-cluster"], bed)
    run([OMNI, "describe", str(store), "--no-cluster"], bed)
    run([OMNI, "select-bridge", str(store), "--count", "2", "--out", str(sel), "--no-cluster"], bed)
    run([OMNI, "emit-jobs", str(sel / "selection.parquet"), "--protocol", "gfn1-xtb", "--out", str(jf)], bed)
    # A command that outlives the time limit (Slurm counts limits in minutes and checks them
    # every 30 s: 00:00:05 stops the task after 60-90 s).
    run([OMNI, "jobs", str(jf), "--write-script", "slurm", "--vasp-cmd", "sleep 600", "--time", "00:00:05",
         "--batch-opt=--mem=200M"], bed)
    array = sbatch(["submit.slurm"], bed, cwd=jf)
    names = sorted(p.name for p in jf.iterdir() if (p / "job.json").is_file())  # array task i runs names[i]

    def both_running() -> bool:
        states = job_states(jf, bed)
        return all(states[n]["state"] == "running" and "(Slurm: RUNNING)" in states[n]["reason"] for n in names)

    wait_for("both array tasks to run", both_running, bed, limit_s=120)
    run(["scancel", f"{array}_0"], bed)
    wait_for("the cancelled task to be reported", lambda: job_states(jf, bed)[names[0]]["state"] == "failed", bed, 60)
    wait_for("the time limit", lambda: job_states(jf, bed)[names[1]]["state"] == "failed", bed, limit_s=180)

    states = job_states(jf, bed)
    assert states[names[0]]["reason"].startswith("cancelled:Slurm job ")
    assert states[names[1]]["reason"].startswith("timeout:Slurm job ") and "time limit of 00:01:00" in states[names[1]]["reason"]
    text = run([OMNI, "jobs", str(jf)], bed).stdout
    assert "cancelled:" in text and "timeout:" in text

    # The documented recovery: re-emit the failed dirs, write the script for them, resubmit.
    run([OMNI, "jobs", str(jf), "--reemit-failed", "--write-script", "slurm", "--time", "00:10:00",
         "--batch-opt=--mem=1G"], bed)
    assert {d["state"] for d in job_states(jf, bed).values()} == {"pending"}
    sbatch(["submit.slurm"], bed, cwd=jf)
    wait_for("the resubmitted array", lambda: queue_empty(bed), bed, limit_s=120)
    states = job_states(jf, bed)
    assert {d["state"] for d in states.values()} == {"done"}, states
    history = states[names[1]]["history"]
    assert history and history[-1]["reason"].startswith("timeout:")
    energy = json.loads((jf / names[0] / "results.json").read_text())["energy"]
    assert energy == pytest.approx(gfn1_energy(jf / names[0]), abs=1e-6)
