"""Issue 22 item 6: Ctrl-C prints one line and exits 130 -- no Dask ``AllExit`` or worker
tracebacks from ``run-local``, no torch traceback from ``omni-train``.

Each command runs as a real subprocess in its own process group, and SIGINT goes to the whole
group, as a terminal sends it on Ctrl-C (so Dask's worker processes receive it too). The child
starts with SIGINT at its default (a test runner started in the background may ignore it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ase.io import read

from omni_data.recompute import jobs
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.protocols import load_protocol
from omni_data.schema import Record
from omni_data.store import write_shard
from omni_data.store.testing import emt_records


def wait_for(condition, what: str, proc: subprocess.Popen, limit: float = 300.0) -> None:
    """Poll ``condition`` while ``proc`` runs (fails naming ``what`` if it ends or takes too long)."""
    deadline = time.monotonic() + limit
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"{what}: the command ended first ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


# ``python -m MODULE ARGS`` with Python's own SIGINT handler installed first
RUN_MODULE = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """``python -m args[0] args[1:]`` in a new process group (its own session)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", RUN_MODULE, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def ctrl_c(proc: subprocess.Popen) -> tuple[int, str, str]:
    """SIGINT to the process group; the exit status, stdout and stderr."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err


def test_run_local_ctrl_c_is_one_line_and_130(shared_data: Path, tmp_path: Path, optional) -> None:
    optional("pyscf", "dft")
    a = read(shared_data / "structures" / "poscar" / "mace_x23_benzene_molecule.POSCAR")
    rec = Record(
        numbers=a.numbers, positions=a.positions, id="x23:benzene", dataset="x23", task="x23", charge=0.0, spin=1
    )
    slow = tmp_path / "slow.yaml"  # PBE/def2-TZVP on benzene: tens of seconds, time to press Ctrl-C
    slow.write_text("PARENT: pyscf-pbe-def2svp\nmethod:\n  name: PBE/def2-TZVP\n  options: {basis: def2-tzvp}\n")
    (row,) = emit_records([(rec, Source(rec.id))], load_protocol(slow), tmp_path / "jobs")
    job = tmp_path / "jobs" / row["job"]
    proc = start(["omni_data.cli.main", "run-local", str(tmp_path / "jobs"), "--workers", "1"], tmp_path)
    wait_for(lambda: (job / "RUNNING").is_file(), "the job to start", proc)
    status, out, err = ctrl_c(proc)
    assert "Traceback" not in err and "AllExit" not in err, err
    assert (status, err) == (130, "omni-data run-local: interrupted; re-run the same command to resume\n")
    assert out.startswith("run-local: 1 job(s) to run, 1 at a time")
    (state,) = jobs.summarize(tmp_path / "jobs")  # its worker is gone: the re-run takes the job again
    assert state.state == "stale", state


def test_omni_train_ctrl_c_is_one_line_and_130(tmp_path: Path) -> None:
    write_shard(tmp_path / "store", "part-0", emt_records(24, seed=1))
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model: {channels: 8, lmax: 1, num_layers: 2, cutoff: 4.0, radial_hidden: [8]}\n"
        f"data: {{store: {tmp_path / 'store'}, batch_size: 2, valid_fraction: 0.25}}\n"
        f"run: {{out_dir: {tmp_path / 'run'}, epochs: 500, log_every: 1, checkpoint_every: 0}}\n"
    )
    proc = start(["omni_model.cli", "train", str(config)], tmp_path)
    wait_for(lambda: (tmp_path / "run" / "train.csv").is_file(), "the first training steps", proc)
    status, _out, err = ctrl_c(proc)
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert status == 130, err
    assert lines[-1] == (
        "omni-train train: interrupted; the same command resumes from the last "
        "checkpoint-last.pt, if one was written (every run.checkpoint_every steps)"
    )
    assert sum("interrupt" in line.lower() for line in lines) == 1, err
    assert any(line.startswith("step 1/") for line in lines), err  # the progress lines of a non-terminal
    assert "FakeTensor" not in err  # torch's INFO logging at exit stays out


def test_ingest_ctrl_c_prints_no_worker_tracebacks(shared_data: Path, tmp_path: Path) -> None:
    """Two Dask worker processes at work when the whole group gets SIGINT: only the client speaks."""
    source = shared_data / "extxyz" / "schnetpack_md17_ethanol_2000frames_kcalmol.extxyz"
    out = tmp_path / "store"
    proc = start(
        [
            "omni_data.cli.main",
            "ingest",
            str(source),
            "--dataset",
            "md17",
            "--task",
            "t",
            "--out",
            str(out),
            "--workers",
            "2",
            "--shard-size",
            "10",
            "--energy-unit",
            "kcal/mol",
        ],
        tmp_path,
    )
    wait_for(lambda: any((out / "sidecars").rglob("*.npz")), "the workers' first partitions", proc)
    status, _out, err = ctrl_c(proc)
    assert "Traceback" not in err and "distributed." not in err, err
    assert status == 130, err
    assert err.strip().splitlines()[-1] == "omni-data ingest: interrupted; re-run the same command to resume"
    assert sum("interrupt" in line.lower() for line in err.splitlines()) == 1, err
