"""Issue 22 items 4 and 5: a job left RUNNING by a process that is gone is ``stale``, ``jobs``
says so, and ``run-local`` runs it again (resume is true); run-local reports progress per job."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omni_data.cli import main as data_cli
from omni_data.recompute import jobs
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.local import jobs_to_run, run_jobs
from omni_data.recompute.progress import Counts, JobProgress
from omni_data.recompute.protocols import load_protocol
from omni_data.safeio import safe_name
from omni_data.schema import Record


def wait_for(condition, what: str, limit: float = 120.0) -> None:
    """Poll ``condition`` until true (fails, naming ``what``, after ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture()
def methane_job(methane_record: Record, tmp_path: Path) -> Path:
    emit_records([(methane_record, Source(methane_record.id))], load_protocol("gfn2-xtb"), tmp_path / "jobs")
    return tmp_path / "jobs" / safe_name(methane_record.id)


def hold_running(job_dir: Path) -> subprocess.Popen:
    """A real process that marks ``job_dir`` RUNNING (as a runner does) and then works on."""
    code = "import sys, time; from omni_data.recompute import jobs; jobs.mark_running(sys.argv[1]); time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(job_dir)])
    wait_for(lambda: (job_dir / "RUNNING").is_file(), "the RUNNING marker")
    return proc


def test_a_killed_run_is_stale_and_run_local_runs_it_again(methane_job: Path, capsys, optional) -> None:
    optional("tblite", "dft")
    root = methane_job.parent
    proc = hold_running(methane_job)
    try:
        (state,) = jobs.summarize(root)
        assert state.state == "running" and f"pid {proc.pid}" in state.reason
        assert jobs_to_run(root) == []  # a live run is left alone
        assert data_cli.main(["run-local", str(root), "--no-cluster"]) == 0
        assert "nothing to run (1 running)" in capsys.readouterr().out
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (state,) = jobs.summarize(root)
    assert state.state == "stale"
    assert state.reason.startswith(f"stale:pid {proc.pid} on {socket.gethostname()} is no longer running")
    assert data_cli.main(["jobs", str(root)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"stale    {methane_job.name}  stale:pid {proc.pid}")
    assert "pending=0 running=0 stale=1 done=0 failed=0 total=1" in err
    assert jobs_to_run(root) == [methane_job]

    assert data_cli.main(["run-local", str(root), "--no-cluster"]) == 0
    out, err = capsys.readouterr()
    assert f"{root}: 1 done, 0 failed" in out
    assert jobs.job_state(methane_job).state == "done" and not (methane_job / "RUNNING").exists()
    history = jobs.read_job(methane_job)["history"]
    assert [(h["attempt"], h["state"]) for h in history] == [(1, "stale")]
    assert history[0]["reason"] == state.reason


def test_another_hosts_marker_is_stale_only_without_a_heartbeat(methane_job: Path) -> None:
    marker = methane_job / "RUNNING"
    marker.write_text("node-17 pid 4242 since 2026-01-01T00:00:00\n")
    (state,) = jobs.summarize(methane_job.parent)
    assert state.state == "running"  # refreshed just now: may be alive on node-17
    old = time.time() - jobs.LEASE_S - 60
    os.utime(marker, (old, old))
    (state,) = jobs.summarize(methane_job.parent)
    assert state.state == "stale" and state.reason.startswith("stale:no heartbeat from pid 4242 on node-17 for 11 min")
    marker.write_text("node-17 job 991 pid 4242 since 2026-01-01T00:00:00\n")  # a batch job: Slurm decides
    os.utime(marker, (old, old))
    assert jobs.with_liveness([jobs.job_state(methane_job)])[0].state == "running"
    marker.write_text("node-17 job 991 task 3 since 2026-01-01T00:00:00\n")  # the bash array loop's marker
    assert jobs.with_liveness([jobs.job_state(methane_job)])[0].state == "running"


def test_heartbeat_refreshes_the_marker(methane_job: Path) -> None:
    jobs.mark_running(methane_job)
    marker = methane_job / "RUNNING"
    old = time.time() - 3600
    os.utime(marker, (old, old))
    with jobs.heartbeat(methane_job, every=0.01):
        wait_for(lambda: marker.stat().st_mtime > old + 3000, "a heartbeat")
    assert jobs.parse_marker(marker.read_text()) == jobs.Marker(
        socket.gethostname(), os.getpid(), None, jobs.parse_marker(marker.read_text()).since
    )


def test_run_local_progress_counts(sic_record: Record, methane_record: Record, tmp_path: Path, optional) -> None:
    optional("tblite", "dft")
    recs = [sic_record, methane_record]
    emit_records([(r, Source(r.id)) for r in recs], load_protocol("gfn2-xtb"), tmp_path / "jobs")
    calls: list[tuple[int, int, int, int, str | None]] = []

    def record(counts: Counts, summary: dict | None) -> None:
        calls.append((counts.done, counts.failed, counts.running, counts.pending, summary and summary["job"]))

    results = run_jobs(tmp_path / "jobs", progress=record)
    names = sorted(safe_name(r.id) for r in recs)
    assert [r["job"] for r in results] == names and {r["state"] for r in results} == {"done"}
    assert calls == [(0, 0, 1, 1, None), (1, 0, 1, 0, names[0]), (2, 0, 0, 0, names[1])]


def test_progress_line_text() -> None:
    ticks = iter([0.0, 30.0])
    line = JobProgress("run-local", clock=lambda: next(ticks)).line(
        Counts(total=10, slots=2, done=2, failed=1),
        {"job": "x23_benzene", "state": "failed", "reason": "unconverged:SCF", "wall_time_s": 12.34},
    )
    assert line == (
        "run-local: [3/10] failed x23_benzene (12.3 s): unconverged:SCF  done 2, failed 1, running 2, "
        "pending 5  elapsed 30s  ETA 1m10s"
    )


def test_run_local_prints_a_line_per_job(methane_job: Path, capsys, optional) -> None:
    optional("tblite", "dft")
    assert data_cli.main(["run-local", str(methane_job.parent), "--no-cluster"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "run-local: 1 job(s) to run, 1 at a time  done 0, failed 0, running 1, pending 0"
    assert re.fullmatch(
        rf"run-local: \[1/1\] done {methane_job.name} \(\d+\.\d s\)  done 1, failed 0, "
        r"running 0, pending 0  elapsed \d+s  finished",
        lines[1],
    ), lines[1]
    assert lines[2] == f"{methane_job.parent}: 1 done, 0 failed"
