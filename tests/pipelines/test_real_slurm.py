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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from conftest import SlurmTestbed  # tests/pipelines/conftest.py

REPO = Path(__file__).resolve().parents[2]

OMNI = str(Path(sys.executable).parent / "omni-data")
# One core and 1 GB per Dask worker job, two jobs: the whole 2-core node of the CI machine.
DASK_ON_SLURM = [
    "--slurm",
    "--cores",
    "1",
    "--processes",
    "1",
    "--memory",
    "1GB",
    "--jobs",
    "2",
    "--walltime",
    "00:10:00",
]


def run(cmd: list[str], bed: SlurmTestbed, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` against the testbed (in ``cwd``, default the testbed's dir, where dask-jobqueue's
    worker logs ``slurm-N.out`` land); fail with its output when it exits non-zero."""
    done = subprocess.run(
        cmd, cwd=cwd or bed.root, env=bed.env(**env), capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done


def job_states(jobs_dir: Path, bed: SlurmTestbed) -> dict[str, dict]:
    """``omni-data jobs DIR --json``, one entry per job dir name."""
    out = run([OMNI, "jobs", str(jobs_dir), "--json"], bed).stdout
    return {d["job"]: d for d in map(json.loads, out.splitlines())}


def wait_for(
    what: str, check: Callable[[], bool], bed: SlurmTestbed, limit_s: float = 240, every_s: float = 2.0
) -> None:
    """Poll ``check`` every ``every_s`` until true; on the limit, fail showing the queue and the
    slurmctld log tail."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
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
    out = run(
        [
            OMNI,
            "ingest",
            str(ethanol),
            "--out",
            str(store),
            "--dataset",
            "md17",
            "--task",
            "pbe-ts",
            "--energy-unit",
            "kcal/mol",
            "--shard-size",
            "500",
            "--no-progress",
            *DASK_ON_SLURM,
        ],
        bed,
    )
    out = out.stdout + out.stderr
    assert "[slurm]" in out and "records read 2000 = written 2000 + quarantined 0" in out
    run(
        [
            OMNI,
            "ingest",
            str(spice),
            "--out",
            str(store),
            "--dataset",
            "spice",
            "--task",
            "wb97m",
            "--no-progress",
            "--no-cluster",
        ],
        bed,
    )
    comp = (bed.root / "jobcomp.txt").read_text()
    assert comp.count("Name=dask-worker") >= 2  # the worker jobs really ran on the scheduler

    # 2. describe + distributed FPS selection, both on Slurm workers
    run([OMNI, "describe", str(store), *DASK_ON_SLURM], bed)
    run(
        [
            OMNI,
            "select-bridge",
            str(store),
            "--count",
            "4",
            "--min-per-task",
            "2",
            "--mode",
            "distributed",
            "--out",
            str(sel),
            *DASK_ON_SLURM,
        ],
        bed,
    )
    coverage = json.loads((sel / "coverage.json").read_text())
    assert {task: v["picks"] for task, v in coverage["tasks"].items()} == {"pbe-ts": 2, "wb97m": 2}
    assert coverage["n_points"] == 2026

    # 3. xTB recompute as the Slurm array script (the VASP one, running the local runner per dir)
    jx = tmp_path / "jobs-xtb"
    run(
        [
            OMNI,
            "emit-jobs",
            str(sel / "selection.parquet"),
            "--protocol",
            "gfn1-xtb",
            "--out",
            str(jx),
            "--write-script",
            "slurm",
            "--max-parallel",
            "2",
            "--time",
            "00:10:00",
            "--batch-opt=--mem=1G",
        ],
        bed,
    )
    script = (jx / "submit.slurm").read_text()
    assert "#SBATCH --array=0-3%2" in script and "-m omni_data.recompute.slurm run-job ." in script
    assert {d["state"] for d in job_states(jx, bed).values()} == {"pending"}
    xtb_array = sbatch(["submit.slurm"], bed, cwd=jx)

    # 4. the VASP array after it (afterok, as run_corpus.sh chains it), then collect (afterany);
    #    VASP is absent, so the command fails and every job must end failed with that reason
    jv = tmp_path / "jobs-vasp"
    run([OMNI, "emit-jobs", str(sel / "selection.parquet"), "--protocol", "mp-pbe-static", "--out", str(jv)], bed)
    submitted = run(
        [
            str(REPO / "pipelines" / "slurm" / "submit_vasp_jobs.sh"),
            str(jv),
            "false",
            "2",
            "--",
            f"--dependency=afterok:{xtb_array}",
            "--mem=500M",
            "--time=00:05:00",
        ],
        bed,
        OMNI_COLLECT_STORE=str(tmp_path / "vasp-store"),
        OMNI_MAX_PARALLEL="1",
    )
    vasp_array = submitted.stdout.strip().splitlines()[-1]
    held = run(["squeue", "-h", "-j", vasp_array, "-o", "%T %r"], bed).stdout.split()
    assert held[:1] == ["PENDING"]  # waits for the xTB array (Dependency), or its turn

    # 5. collect the xTB results into the store (afterok the array), then train on it (afterok
    #    collect): pipelines/slurm/train.sbatch, srun + torchrun with 2 gloo processes on the node
    logs = tmp_path / "logs"
    logs.mkdir()
    collect = sbatch(
        [
            f"--dependency=afterok:{xtb_array}",
            "--mem=2G",
            f"--output={logs}/collect-%j.out",
            f"--wrap={OMNI} collect-bridge {jx} --out {store} --task bridge-gfn1",
        ],
        bed,
        cwd=tmp_path,
    )
    work = tmp_path / "work"
    (work / "train").mkdir(parents=True)
    (work / "train" / "train.yaml").write_text(TRAIN_YAML.format(store=store, out=work / "train"))
    train = sbatch(
        [
            f"--dependency=afterok:{collect}",
            "--nodes=1",
            "--ntasks=1",
            "--cpus-per-task=2",
            "--mem=4G",
            "--gpus-per-node=0",
            "--time=00:10:00",
            f"--output={logs}/train-%j.out",
            str(REPO / "pipelines" / "slurm" / "train.sbatch"),
        ],
        bed,
        cwd=tmp_path,
        OMNI_REPO=str(REPO),
        OMNI_WORK=str(work),
        OMNI_PROCS_PER_NODE="2",
        OMNI_MASTER_PORT=free_port(),
    )
    wait_for(
        "xTB array, VASP array, both collects and training to leave the queue",
        lambda: queue_empty(bed),
        bed,
        limit_s=360,
    )

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


def test_cancelled_and_timed_out_jobs_on_real_slurm(
    slurm_testbed: SlurmTestbed, shared_data: Path, tmp_path: Path
) -> None:
    bed = slurm_testbed
    store, sel, jf = tmp_path / "store", tmp_path / "sel", tmp_path / "jobs"
    run(
        [
            OMNI,
            "ingest",
            str(shared_data / "extxyz" / "schnetpack_md17_ethanol_2000frames_kcalmol.extxyz"),
            "--out",
            str(store),
            "--dataset",
            "md17",
            "--task",
            "pbe-ts",
            "--energy-unit",
            "kcal/mol",
            "--no-progress",
            "--no-cluster",
        ],
        bed,
    )
    run([OMNI, "describe", str(store), "--no-cluster"], bed)
    run([OMNI, "select-bridge", str(store), "--count", "2", "--out", str(sel), "--no-cluster"], bed)
    run([OMNI, "emit-jobs", str(sel / "selection.parquet"), "--protocol", "gfn1-xtb", "--out", str(jf)], bed)
    # A command that outlives the time limit (Slurm counts limits in minutes and checks them
    # every 30 s: 00:00:05 stops the task after 60-90 s).
    run(
        [
            OMNI,
            "jobs",
            str(jf),
            "--write-script",
            "slurm",
            "--vasp-cmd",
            "sleep 600",
            "--time",
            "00:00:05",
            "--batch-opt=--mem=200M",
        ],
        bed,
    )
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
    assert (
        states[names[1]]["reason"].startswith("timeout:Slurm job ")
        and "time limit of 00:01:00" in states[names[1]]["reason"]
    )
    text = run([OMNI, "jobs", str(jf)], bed).stdout
    assert "cancelled:" in text and "timeout:" in text

    # The documented recovery: re-emit the failed dirs, write the script for them, resubmit.
    run(
        [
            OMNI,
            "jobs",
            str(jf),
            "--reemit-failed",
            "--write-script",
            "slurm",
            "--time",
            "00:10:00",
            "--batch-opt=--mem=1G",
        ],
        bed,
    )
    assert {d["state"] for d in job_states(jf, bed).values()} == {"pending"}
    sbatch(["submit.slurm"], bed, cwd=jf)
    wait_for("the resubmitted array", lambda: queue_empty(bed), bed, limit_s=120)
    states = job_states(jf, bed)
    assert {d["state"] for d in states.values()} == {"done"}, states
    history = states[names[1]]["history"]
    assert history and history[-1]["reason"].startswith("timeout:")
    energy = json.loads((jf / names[0] / "results.json").read_text())["energy"]
    assert energy == pytest.approx(gfn1_energy(jf / names[0]), abs=1e-6)


def _store_snapshot(store: Path) -> tuple[list, list]:
    """Every record (id, energy, positions) and every shard (name, records, both files' sha256)."""
    from omni_data.store import Store
    from omni_data.store.catalog import Catalog

    records = sorted((r.id, r.energy, r.positions.tobytes()) for r in Store(store))
    shards = sorted(
        (e["name"], e["records"], e["files"]["lmdb"]["sha256"], e["files"]["columns"]["sha256"])
        for e in Catalog(store).shards
    )
    return records, shards


def _catalogued(store: Path) -> int:
    try:
        return len(json.loads((store / "catalog.json").read_text())["shards"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_dask_worker_job_cancelled_mid_ingest_rerun_completes_same_store(
    slurm_testbed: SlurmTestbed, shared_data: Path, tmp_path: Path
) -> None:
    """scancel one dask-jobqueue worker job while `ingest --slurm` runs; the re-run of the same
    command completes a store equal, shard by shard and record by record, to a clean run's."""
    bed = slurm_testbed
    ethanol = shared_data / "extxyz" / "schnetpack_md17_ethanol_2000frames_kcalmol.extxyz"
    store = tmp_path / "store"
    # 100 partitions of 20 frames: enough that the cancel lands while partitions are still open.
    base = [
        OMNI,
        "ingest",
        str(ethanol),
        "--dataset",
        "md17",
        "--task",
        "pbe-ts",
        "--energy-unit",
        "kcal/mol",
        "--shard-size",
        "20",
        "--no-progress",
    ]
    cmd = [*base, "--out", str(store), *DASK_ON_SLURM]
    first = subprocess.Popen(
        cmd, cwd=bed.root, env=bed.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        running: list[str] = []

        def shard_in_and_a_worker_running() -> bool:
            # both at one poll, every 0.5 s: the cancel must land while partitions are still open
            nonlocal running
            if first.poll() is not None:
                return True
            running = run(["squeue", "-h", "-t", "RUNNING", "-n", "dask-worker", "-o", "%i"], bed).stdout.split()
            return _catalogued(store) >= 1 and bool(running)

        wait_for("a catalogued shard while a worker job runs", shard_in_and_a_worker_running, bed, 180, every_s=0.5)
        assert first.poll() is None and running, "ingest finished (or no worker job ran) before the cancel"
        victim = running[0]
        run(["scancel", victim], bed)
        at_cancel = _catalogued(store)
        first_out, _ = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert 1 <= at_cancel < 100, at_cancel
    wait_for(
        f"worker job {victim} to be recorded",
        lambda: f"JobId={victim} " in (bed.root / "jobcomp.txt").read_text(),
        bed,
        limit_s=60,
    )
    record = next(
        line for line in (bed.root / "jobcomp.txt").read_text().splitlines() if line.startswith(f"JobId={victim} ")
    )
    assert "JobState=CANCELLED" in record, record
    after_first = _catalogued(store)

    again = run(cmd, bed)
    out = again.stdout + again.stderr
    assert f"partitions: 100 ({after_first} already in the store, {100 - after_first} written" in out, out
    run([*base, "--out", str(tmp_path / "clean"), "--no-cluster"], bed)
    resumed, clean = _store_snapshot(store), _store_snapshot(tmp_path / "clean")
    assert len(resumed[0]) == 2000 and len(resumed[1]) == 100
    assert resumed == clean
    assert "ok" in run([OMNI, "verify", str(store)], bed).stdout.lower()
    print(
        f"first run exit {first.returncode}, {after_first}/100 shards; cancelled at {at_cancel}:\n{first_out[-2000:]}"
    )


# The reduced corpus for run_corpus.sh on the one-node testbed: two real sample datasets through
# their manifests (OMol25 .aselmdb samples, 180 records; 26 SPICE frames read as the `mad` extxyz
# manifest), GFN1-xTB instead of VASP, the `small` model preset and 3 training steps, and 1-core,
# 2 GB jobs (OMNI_SBATCH_ARGS) instead of corpus.yaml's 32-core ones.
TEST_CORPUS = """data_root: {data}
work_dir: {work}
store: store
ingest: {{shard_size: 100, jobs: 1, cores_per_job: 1, processes_per_job: 1, memory: 1GB, walltime: "00:10:00",
          max_parallel_datasets: 1}}
datasets:
  - {{name: omol25, source: aselmdb, tasks: [omol25_low, omol25_high], weight: 1.0}}
  - {{name: mad, source: extxyz/chemreporter_spice_amino_acid_ligand_26frames.extxyz, tasks: [pet_mad], weight: 1.0}}
  - {{name: bridge, source: bridge/jobs, tasks: [bridge], weight: 2.0, recomputed: true}}
bridge: {{fraction: 0.03, min_per_task: 2, descriptor: rdf, protocol: gfn1-xtb, jobs_per_array_task: 2,
          array_parallel: 2}}
train: {{preset: small, nodes: 1, gpus_per_node: 0, task_l2: 1.0e-4,
         stages: [{{name: all, datasets: [omol25, mad, bridge], steps: 3}}]}}
"""


def _job_id(label: str, text: str) -> str:
    """The job id run_corpus.sh printed as ``LABEL: job N``."""
    line = next((ln for ln in text.splitlines() if ln.startswith(f"{label}: job ")), None)
    assert line, f"no '{label}: job' line in:\n{text}"
    return line.split()[2]


def _scontrol_field(job: str, key: str, bed: SlurmTestbed) -> list[str]:
    """``key`` of the job, or of each task of an array job (scontrol keeps them MinJobAge s)."""
    out = run(["scontrol", "-o", "show", "job", job], bed).stdout
    return sorted(w.split("=", 1)[1] for ln in out.splitlines() for w in ln.split() if w.startswith(f"{key}="))


def test_run_corpus_chain_on_real_slurm(slurm_testbed: SlurmTestbed, shared_data: Path, tmp_path: Path) -> None:
    """pipelines/run_corpus.sh as a user submits it, on a reduced corpus (TEST_CORPUS): ingest
    array (Dask worker jobs) -> describe_select (which submits the second half itself) -> the
    VASP array template running xTB -> collect.sbatch -> train.sbatch, all by --dependency."""
    bed = slurm_testbed
    work = tmp_path / "work"
    corpus = tmp_path / "corpus.yaml"
    corpus.write_text(TEST_CORPUS.format(data=shared_data, work=work))
    env = dict(
        OMNI_REPO=str(REPO),
        OMNI_CORPUS=str(corpus),
        OMNI_PROCS_PER_NODE="2",
        OMNI_MASTER_PORT=free_port(),
        OMNI_VASP_CMD=f"{sys.executable} -m omni_data.recompute.slurm run-job .",
        OMNI_SBATCH_ARGS="--cpus-per-task=1 --mem=2G --time=00:15:00",
    )
    workers_before = (bed.root / "jobcomp.txt").read_text().count("Name=dask-worker")
    out = run([str(REPO / "pipelines" / "run_corpus.sh")], bed, cwd=tmp_path, **env).stdout
    ingest, select = _job_id("ingest", out), _job_id("describe+select+emit", out)
    wait_for("the whole run_corpus.sh chain to leave the queue", lambda: queue_empty(bed), bed, limit_s=420)

    logs = work / "logs"
    select_log = (logs / f"select-{select}.out").read_text()
    vasp, collect, train = (_job_id(s, select_log) for s in ("vasp", "collect", "train"))
    assert _scontrol_field(ingest, "JobState", bed) == ["COMPLETED"] * 2, (ingest, out)
    for job, tasks in ((select, 1), (vasp, 3), (collect, 1), (train, 1)):
        assert _scontrol_field(job, "JobState", bed) == ["COMPLETED"] * tasks, (job, select_log)
    # the dependencies held: each stage started only after every task of the one before ended
    for before, after in ((ingest, select), (vasp, collect), (collect, train)):
        assert min(_scontrol_field(after, "StartTime", bed)) >= max(_scontrol_field(before, "EndTime", bed))
    assert _scontrol_field(vasp, "MinMemoryNode", bed) == ["2G"] * 3  # OMNI_SBATCH_ARGS reach the array
    assert (bed.root / "jobcomp.txt").read_text().count("Name=dask-worker") >= workers_before + 2

    ingest_logs = sorted(logs.glob(f"ingest-{ingest}_*.out"))
    assert [
        ("records read 180 = written 180" in p.read_text(), "records read 26 = written 26" in p.read_text())
        for p in ingest_logs
    ] == [(True, False), (False, True)]
    assert "[slurm]" in ingest_logs[0].read_text()
    assert "vasp array" in select_log and "6 job dirs, 2 per task, array 0-2%2" in select_log

    jobs = work / "bridge" / "jobs"
    states = job_states(jobs, bed)
    assert len(states) == 6 and {d["state"] for d in states.values()} == {"done"}, states
    first = sorted(p for p in jobs.iterdir() if (p / "results.json").is_file())[0]
    assert json.loads((first / "results.json").read_text())["energy"] == pytest.approx(gfn1_energy(first), abs=1e-6)

    store = work / "store"
    info = run([OMNI, "info", str(store)], bed).stdout
    assert "tasks: bridge 6, omol25_high 10, omol25_low 170, pet_mad 26" in info, info
    assert "references" in info and "splits" in info
    assert "checked: OK" in (logs / f"collect-{collect}.out").read_text()
    assert (work / "report" / "report.html").is_file()
    train_log = (logs / f"train-{train}.out").read_text()
    assert "gpus/node=2" in train_log and "done: 3 steps" in train_log
    assert (work / "train" / "final.pt").is_file()
