"""`omni-data jobs` against what Slurm reports, without a running Slurm: real Slurm 22.05 output
(captured from the testbed) parsed, the job's output file as the last source, and the array
script running the local xTB runner per job dir (test_real_slurm.py runs all of it under sbatch)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from omni_data.recompute import jobs, queue
from omni_data.recompute.slurm import BatchOptions, default_command, write_batch

# `scontrol -o show job` lines from the one-node testbed (Slurm 22.05.8), shortened in the middle.
SCONTROL = (
    "JobId=33 ArrayJobId=33 ArrayTaskId=1 JobName=omni-recompute UserId=root(0) JobState=TIMEOUT Reason=TimeLimit "
    "Dependency=(null) RunTime=00:01:23 TimeLimit=00:01:00 TimeMin=N/A NodeList=vm "
    "StdErr=/w/jobs/logs/slurm-33_1.out StdIn=/dev/null StdOut=/w/jobs/logs/slurm-33_1.out Power=\n"
    "JobId=34 ArrayJobId=33 ArrayTaskId=0 JobName=omni-recompute UserId=root(0) JobState=CANCELLED Reason=None "
    "RunTime=00:00:03 TimeLimit=00:01:00 StdOut=/w/jobs/logs/slurm-33_0.out Power=\n"
    "JobId=35 JobName=wrap JobState=RUNNING Reason=None TimeLimit=UNLIMITED StdOut=/w/slurm-35.out Power=\n"
)
TIME_LIMIT_LINE = "slurmstepd-vm: error: *** JOB 33 ON vm CANCELLED AT 2026-12-06T22:39:22 DUE TO TIME LIMIT ***\n"
CANCEL_LINE = "slurmstepd-vm: error: *** JOB 34 ON vm CANCELLED AT 2026-12-06T22:37:58 ***\n"


def test_scontrol_and_sacct_output_is_parsed() -> None:
    found = queue.parse_scontrol(SCONTROL)
    assert found["33"] == queue.BatchJob("33", "TIMEOUT", "00:01:00", "/w/jobs/logs/slurm-33_1.out", "scontrol")
    assert found["34"].state == "CANCELLED" and found["35"].state == "RUNNING"
    sacct = queue.parse_sacct("33|TIMEOUT|00:01:00\n34|CANCELLED by 0|00:01:00\n")
    assert sacct["34"].state == "CANCELLED" and sacct["33"].time_limit == "00:01:00"


def test_slurmstepd_lines_tell_timeout_from_cancel(tmp_path: Path) -> None:
    (tmp_path / "t.out").write_text("running\n" + TIME_LIMIT_LINE)
    (tmp_path / "c.out").write_text("running\n" + CANCEL_LINE)
    (tmp_path / "ok.out").write_text("done\n")
    assert queue.state_from_log(tmp_path / "t.out") == "TIMEOUT"
    assert queue.state_from_log(tmp_path / "c.out") == "CANCELLED"
    assert queue.state_from_log(tmp_path / "ok.out") is None
    assert queue.state_from_log(tmp_path / "missing.out") is None


def _job_dir(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir(parents=True)
    jobs.write_json_atomic(d / jobs.JOB_FILE, {"record_id": name, "engine": "tblite", "protocol": "gfn1-xtb"})
    return d


def test_sigterm_failures_read_from_the_job_log_without_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No scontrol/sacct (aged out of slurmctld, no accounting): the output file decides."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    root = tmp_path / "jobs"
    a, b, c = _job_dir(root, "a"), _job_dir(root, "b"), _job_dir(root, "c")
    (root / "logs").mkdir()
    (root / "logs" / "slurm-33_1.out").write_text(TIME_LIMIT_LINE)
    (root / "logs" / "slurm-33_0.out").write_text(CANCEL_LINE)
    jobs.mark_failed(a, "run:killed by SIGTERM (time limit or scancel); batch job 33 array 33_1")
    jobs.mark_failed(b, "run:killed by SIGTERM (time limit or scancel); batch job 34 array 33_0")
    jobs.mark_failed(c, "run:killed by SIGTERM (time limit or scancel); batch job 36 array 36_0")  # no log
    states = {s.path.name: s for s in jobs.summarize(root)}
    assert states["a"].reason.startswith("timeout:Slurm job 33 reached its time limit;")
    assert states["a"].reason.endswith("(Slurm JobState=TIMEOUT, from log)")
    assert states["b"].reason.startswith("cancelled:Slurm job 34 was cancelled")
    assert states["c"].reason == "run:killed by SIGTERM (time limit or scancel); batch job 36 array 36_0"
    assert {s.state for s in states.values()} == {"failed"}


def test_running_marker_checked_against_scontrol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in scontrol printing the real lines above: job 35 runs, job 33 is over."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "scontrol").write_text(f"#!/bin/sh\n/bin/cat <<'EOF'\n{SCONTROL}EOF\n")
    (bindir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    root = tmp_path / "jobs"
    live, gone = _job_dir(root, "live"), _job_dir(root, "gone")
    (live / "RUNNING").write_text("vm job 35 task 0 since 2026-12-06T22:37:55\n")
    (gone / "RUNNING").write_text("vm job 33 pid 77 since 2026-12-06T22:37:55\n")
    states = {s.path.name: s for s in jobs.summarize(root)}
    assert states["live"].state == "running" and states["live"].reason.endswith("(Slurm: RUNNING)")
    assert states["gone"].state == "failed" and states["gone"].reason.startswith("lost:Slurm job 33 ended TIMEOUT")
    assert [s.state for s in jobs.summarize(root, ask_queue=False)] == ["running", "running"]


def test_mark_running_names_the_batch_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _job_dir(tmp_path, "j")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    jobs.mark_running(d)
    assert queue.job_id_in((d / "RUNNING").read_text()) == "4242"


def test_array_script_runs_the_local_xtb_runner(shared_data: Path, tmp_path: Path) -> None:
    """`--write-script slurm` without --vasp-cmd on xTB jobs: each array task runs the local
    runner in its dir; the loop keeps the runner's DONE (before: 'vasprun.xml missing')."""
    from ase.io import read

    from omni_data.recompute.emit import Source, emit_record
    from omni_data.recompute.protocols import load_protocol
    from omni_data.schema import Record

    atoms = read(shared_data / "extxyz" / "schnetpack_md17_ethanol_2000frames_kcalmol.extxyz", index=0)
    record = Record(numbers=atoms.numbers, positions=atoms.positions, id="ethanol-0", dataset="md17", task="pbe-ts")
    root = tmp_path / "jobs"
    root.mkdir()
    emit_record(
        record, load_protocol("gfn1-xtb"), root, Source(record_id="ethanol-0", source_task="pbe-ts", dataset="md17")
    )
    command = default_command(root)
    assert command.endswith("-m omni_data.recompute.slurm run-job .")
    script, n = write_batch(root, BatchOptions(vasp_cmd=command))
    assert n == 1
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="0", OMP_NUM_THREADS="1")
    subprocess.run(["bash", str(script)], cwd=root, env=env, check=True, capture_output=True, timeout=300)
    (state,) = jobs.summarize(root)
    assert state.state == "done", state.reason
    result = json.loads((state.path / "results.json").read_text())
    from tblite.ase import TBLite

    atoms.calc = TBLite(method="GFN1-xTB", verbosity=0)  # tblite's own ASE calculator
    assert result["method"] == "GFN1-xTB" and result["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
    assert not (root / "failures.tsv").exists()


def test_vasp_jobs_need_a_vasp_command(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    _job_dir(root, "v")
    jobs.write_json_atomic(
        root / "v" / jobs.JOB_FILE, {"record_id": "v", "engine": "vasp", "protocol": "mp-pbe-static"}
    )
    with pytest.raises(ValueError, match="engine vasp need --vasp-cmd"):
        default_command(root)
