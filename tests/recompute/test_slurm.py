"""Batch scripts: rendered text, ``bash -n``, and a real run of the rendered script with a fake VASP."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ase.io import read

from omni_data.recompute import jobs
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.protocols import load_protocol
from omni_data.recompute.slurm import BatchOptions, joblist_of, render, write_batch
from omni_data.safeio import safe_name
from omni_data.schema import Record

COMPLETE = "vasp/custodian_lobster_v51_static_nonspin.vasprun.xml"
TRUNCATED = "vasp/custodian_bad_vasprun_truncated_ggau.vasprun.xml"


def bash_syntax_ok(script: Path) -> None:
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_rendered_slurm_header_and_quoting(tmp_path: Path) -> None:
    weird = tmp_path / "it's $(touch PWNED) a dir"
    weird.mkdir()
    dirs = [weird / f"job{i}" for i in range(5)]
    opts = BatchOptions(
        vasp_cmd="srun --mpi=pmix vasp_std 'x y'",
        per_task=2,
        partition="cpu",
        account="proj-1",
        time="02:00:00",
        max_parallel=4,
        ntasks_per_node=64,
        extra=["--qos=normal"],
    )
    text = render(dirs, weird / "joblist.txt", weird / "failures.tsv", opts, "slurm")
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in (
        "#SBATCH --array=0-2%4",
        "#SBATCH --partition=cpu",
        "#SBATCH --account=proj-1",
        "#SBATCH --time=02:00:00",
        "#SBATCH --ntasks-per-node=64",
        "#SBATCH --qos=normal",
        "#SBATCH --job-name=omni-recompute",
        "PER_TASK=2",
    ):
        assert expected in lines, expected
    assert "VASP_CMD='srun --mpi=pmix vasp_std '\"'\"'x y'\"'\"''" in lines
    script = weird / "submit.slurm"
    script.write_text(text)
    bash_syntax_ok(script)
    # SBATCH directives must be contiguous at the top (sbatch stops at the first command)
    first_cmd = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert all(not line.startswith("#SBATCH") for line in lines[first_cmd:])


def test_rendered_pbs(tmp_path: Path) -> None:
    text = render(
        [tmp_path / "a", tmp_path / "b", tmp_path / "c"],
        tmp_path / "l.txt",
        tmp_path / "f.tsv",
        BatchOptions(vasp_cmd="mpirun vasp_std", per_task=1, partition="workq"),
        "pbs",
    )
    assert "#PBS -J 0-2" in text and "#PBS -q workq" in text and "PBS_ARRAY_INDEX" in text
    (tmp_path / "s.pbs").write_text(text)
    bash_syntax_ok(tmp_path / "s.pbs")


@pytest.mark.parametrize(
    "bad",
    [
        dict(partition="cpu\n#SBATCH --wrap=evil"),
        dict(account="a b"),
        dict(extra=["--qos=normal --x"]),
        dict(extra=["qos"]),
        dict(job_name="$(id)"),
    ],
)
def test_directive_values_are_checked(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ValueError):
        render([tmp_path], tmp_path / "l", tmp_path / "f", BatchOptions(vasp_cmd="vasp_std", **bad))
    with pytest.raises(ValueError, match="per_task"):
        render([tmp_path], tmp_path / "l", tmp_path / "f", BatchOptions(vasp_cmd="vasp", per_task=0))


def _emit_three(shared_data: Path, root: Path) -> list[Path]:
    atoms = read(shared_data / "structures" / "poscar" / "dpdata_SiC.POSCAR")
    recs = [
        Record(
            numbers=atoms.numbers,
            positions=atoms.positions + 0.01 * i,
            cell=atoms.cell.array,
            pbc=atoms.pbc,
            id=f"mpa:SiC-{i}",
            dataset="mpa",
            task="mpa",
        )
        for i in range(3)
    ]
    emit_records([(r, Source(r.id)) for r in recs], load_protocol("mp-pbe-static"), root)
    return [root / safe_name(r.id) for r in recs]


def test_array_script_runs_skips_and_records_failures(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "it's $(touch PWNED) jobs"
    dirs = _emit_three(shared_data, root)
    (dirs[1] / "FAIL_ME").write_text("")
    jobs.mark_done(dirs[2])  # finished before: must be skipped
    log = tmp_path / "calls.log"
    fake = f'echo "$PWD" >> {log}; if [ -f FAIL_ME ]; then exit 3; fi; cp {shared_data / COMPLETE} vasprun.xml'
    script, n = write_batch(root, BatchOptions(vasp_cmd=fake, per_task=2))
    assert n == 2 and joblist_of(script).read_text().splitlines() == [str(dirs[0].resolve()), str(dirs[1].resolve())]
    bash_syntax_ok(script)
    assert "#SBATCH --array=0-0" in script.read_text()
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0"}
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr
    states = {d.name: jobs.job_state(d) for d in dirs}
    assert states[dirs[0].name].state == "done" and (dirs[0] / "vasprun.xml").is_file()
    assert states[dirs[1].name].state == "failed" and "exited with code 3" in states[dirs[1].name].reason
    assert states[dirs[2].name].state == "done"
    failures = (root / "failures.tsv").read_text().splitlines()
    assert failures == [f"{dirs[1].resolve()}\t0\t3\trun:VASP command exited with code 3"]
    assert log.read_text().splitlines() == [str(dirs[0].resolve()), str(dirs[1].resolve())]
    # second run: the done job is skipped, only the failed one runs again (and VASP writes a bad file)
    (dirs[1] / "FAIL_ME").unlink()
    fake2 = f'echo "$PWD" >> {log}; cp {shared_data / TRUNCATED} vasprun.xml'
    first_list = joblist_of(script)
    script, n = write_batch(root, BatchOptions(vasp_cmd=fake2, per_task=1))
    assert n == 1 and joblist_of(script) != first_list and first_list.is_file()
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines()[-1] == str(dirs[1].resolve()) and len(log.read_text().splitlines()) == 3
    assert "incomplete" in jobs.job_state(dirs[1]).reason
    assert not list(tmp_path.rglob("PWNED"))


def test_array_task_beyond_list_does_nothing(shared_data: Path, tmp_path: Path) -> None:
    dirs = _emit_three(shared_data, tmp_path)
    script, n = write_batch(tmp_path, BatchOptions(vasp_cmd="exit 1", per_task=2))
    assert n == 3 and "#SBATCH --array=0-1" in script.read_text()
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "5"}
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0 and all(jobs.job_state(d).state == "pending" for d in dirs)
    assert shutil.which("bash")


def test_pipeline_script_is_current_and_runs(shared_data: Path, tmp_path: Path) -> None:
    from omni_data.recompute.slurm import PIPELINE_SCRIPT, render_pipeline_script

    repo = Path(__file__).resolve().parents[2]
    script = repo / PIPELINE_SCRIPT
    assert script.read_text() == render_pipeline_script(), "regenerate: python -m omni_data.recompute.slurm"
    bash_syntax_ok(script)
    root = tmp_path / "a b"
    dirs = sorted(_emit_three(shared_data, root), key=lambda p: p.name)
    (root / f".{dirs[0].name}.tmp-1").mkdir()  # an emit in progress: never a job
    (root / f".{dirs[0].name}.tmp-1" / "job.json").write_text("{}")
    env = {
        **os.environ,
        "OMNI_JOBS_DIR": str(root),
        "OMNI_JOBS_PER_TASK": "2",
        "SLURM_ARRAY_TASK_ID": "1",
        "OMNI_VASP_CMD": f"cp {shared_data / COMPLETE} vasprun.xml",
    }
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert [jobs.job_state(d).state for d in dirs] == ["pending", "pending", "done"]  # task 1 = third dir
    env["SLURM_ARRAY_TASK_ID"] = "0"
    env["OMNI_VASP_CMD"] = "exit 7"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert [jobs.job_state(d).state for d in dirs] == ["failed", "failed", "done"]
    assert len((root / "failures.tsv").read_text().splitlines()) == 2
    del env["OMNI_VASP_CMD"]
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode != 0 and "OMNI_VASP_CMD" in proc.stderr


def test_submit_helper_with_stand_in_sbatch(shared_data: Path, tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    root = tmp_path / "jobs"
    _emit_three(shared_data, root)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch.calls"
    (bin_dir / "sbatch").write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> {calls}\necho 4242\n')
    (bin_dir / "sbatch").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "OMNI_COLLECT_STORE": str(tmp_path / "st ore"),
        "OMNI_MAX_PARALLEL": "5",
    }
    proc = subprocess.run(
        [
            "bash",
            str(repo / "pipelines/slurm/submit_vasp_jobs.sh"),
            str(root),
            "srun vasp_std",
            "2",
            "--",
            "--partition=cpu",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "4242"
    array_call, collect_call = calls.read_text().splitlines()
    assert "--array=0-1%5" in array_call and "--partition=cpu" in array_call
    assert array_call.endswith("pipelines/slurm/vasp_array.sbatch")
    assert "--dependency=afterany:4242" in collect_call and "collect-bridge" in collect_call
    assert "st\\ ore" in collect_call  # the store path is shell-quoted inside --wrap


def test_sigterm_marks_the_running_dir_failed(shared_data: Path, tmp_path: Path) -> None:
    import signal
    import time

    dirs = _emit_three(shared_data, tmp_path)
    script, _ = write_batch(tmp_path, BatchOptions(vasp_cmd="sleep 30", per_task=3))
    proc = subprocess.Popen(
        ["bash", str(script)],
        env={**os.environ, "SLURM_ARRAY_TASK_ID": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not any((d / "RUNNING").exists() for d in dirs) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    states = [jobs.job_state(d) for d in dirs]
    assert [s.state for s in states] == ["failed", "pending", "pending"]
    assert "SIGTERM" in states[0].reason and not (dirs[0] / "RUNNING").exists()


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_batch_script_reruns_a_locally_interrupted_job(shared_data: Path, tmp_path: Path) -> None:
    """A job whose RUNNING marker names a dead local pid (run-local killed) is ``stale``: the batch
    script lists it again, a live run's job is left alone (before: only pending and failed)."""
    import socket

    root = tmp_path / "jobs"
    dirs = _emit_three(shared_data, root)
    host = socket.gethostname()
    (dirs[0] / "RUNNING").write_text(f"{host} pid {_dead_pid()} since 2026-01-01T00:00:00\n")
    (dirs[1] / "RUNNING").write_text(f"{host} pid {os.getpid()} since 2026-01-01T00:00:00\n")
    jobs.mark_done(dirs[2])
    assert [s.state for s in jobs.summarize(root)] == ["stale", "running", "done"]
    fake = f"cp {shared_data / COMPLETE} vasprun.xml"
    script, n = write_batch(root, BatchOptions(vasp_cmd=fake))
    assert n == 1 and joblist_of(script).read_text().splitlines() == [str(dirs[0].resolve())]
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0"}
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert [s.state for s in jobs.summarize(root)] == ["done", "running", "done"]
    assert not (dirs[0] / "RUNNING").exists() and (dirs[0] / "vasprun.xml").is_file()
