"""Run recompute jobs locally (tblite, PySCF) as Dask tasks, one task per job dir.

Each task reads the job's ``record.json``, runs the protocol's engine, and writes
``results.json`` (method, protocol, package versions, convergence, wall time, energy) and
``results.npz`` (numbers, positions, cell, pbc, forces, stress) atomically, then the DONE marker.
Any failure is written to FAILED with its reason; nothing is skipped silently.
"""

from __future__ import annotations

import functools
import platform
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.recompute import jobs
from omni_data.recompute.molecules import Refused
from omni_data.recompute.progress import Counts
from omni_data.recompute.protocols import Protocol, load_protocol
from omni_data.recompute.runners import get_runner
from omni_data.recompute.runners.result import RunFailed, write_arrays

__all__ = ["run_job", "jobs_to_run", "run_jobs"]

RESULTS_JSON = "results.json"
RESULTS_NPZ = "results.npz"


def run_job(job_dir: str | Path, protocol_name: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run one job dir; returns ``{"job", "state", "reason", "energy", "wall_time_s"}``.

    ``threads`` caps the OpenMP/BLAS threads of the engine (threadpoolctl): one Dask worker per
    core wants 1; None leaves the libraries' defaults."""
    if threads is None:
        return _run_job(Path(job_dir), protocol_name)
    with _thread_controller().limit(limits=int(threads)):
        return _run_job(Path(job_dir), protocol_name)


@functools.lru_cache(maxsize=1)
def _thread_controller() -> Any:
    """One threadpoolctl controller per process (finding the libraries costs ~5 ms each time)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@functools.lru_cache(maxsize=16)
def _protocol(name: str) -> Protocol:
    """Protocols parsed once per worker process, not once per job."""
    return load_protocol(name)


def _remember_failure(job_dir: Path) -> None:
    """Before a failed or stale job is re-run in place, add that attempt to job.json's ``history``
    (a stale one: its RUNNING marker names a process that is gone, see ``jobs.stale_reason``)."""
    (state,) = jobs.with_liveness([jobs.job_state(job_dir)])
    if state.state not in ("failed", "stale"):
        return
    marker = job_dir / ("FAILED" if state.state == "failed" else "RUNNING")
    job = state.job or jobs.read_job(job_dir)
    history = list(job.get("history") or [])
    history.append(
        {
            "attempt": len(history) + 1,
            "state": state.state,
            "reason": state.reason,
            "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(marker.stat().st_mtime)),
            "replaced": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "files": None,
            "protocol": job.get("protocol"),
            "protocol_sha256": job.get("protocol_sha256"),
        }
    )
    job["history"] = history
    jobs.write_json_atomic(job_dir / jobs.JOB_FILE, job)


def _job_protocol(job: dict[str, Any]) -> str:
    """The protocol file the job was emitted from when it still exists, else its name."""
    path = (job.get("protocol_spec") or {}).get("path")
    return str(path) if path and Path(path).is_file() else str(job.get("protocol"))


def _run_job(job_dir: Path, protocol_name: str | None) -> dict[str, Any]:
    job = jobs.read_job(job_dir)
    name = protocol_name or _job_protocol(job)
    summary: dict[str, Any] = {
        "job": job_dir.name,
        "state": "failed",
        "reason": "",
        "energy": None,
        "wall_time_s": None,
    }
    try:
        protocol = _protocol(name)
        emitted = str(job.get("protocol") or "")
        if protocol_name and emitted and protocol.name != emitted:
            # the bridge is one level of theory: collect would refuse a result of another method
            raise Refused(
                f"refused:method {protocol.name} is not this job's protocol {emitted}; "
                f"re-emit the jobs with --protocol {protocol.name} or leave --method out"
            )
        if protocol.engine == "vasp" or protocol.method is None:
            raise Refused(
                f"refused:protocol {name} runs on {protocol.engine}, not a local engine; use the batch script"
            )
        record = jobs.read_record(job_dir)
        runner = get_runner(protocol.engine)
        _remember_failure(job_dir)
        jobs.clear_markers(job_dir)
        jobs.mark_running(job_dir)
        start = time.perf_counter()
        with jobs.heartbeat(job_dir):
            result = runner.run(record, protocol.method)
        wall = time.perf_counter() - start
        _write_results(job_dir, job, protocol, record, result, wall, runner.versions())
        jobs.mark_done(job_dir)
        summary.update(state="done", energy=result.energy, wall_time_s=wall)
    except (Refused, RunFailed) as exc:
        summary["reason"] = exc.reason
        jobs.mark_failed(job_dir, exc.reason)
    except Exception as exc:  # any engine crash is a recorded failure, with its type and message
        reason = f"run:{type(exc).__name__}: {exc}"
        summary["reason"] = reason
        jobs.mark_failed(job_dir, reason)
        (job_dir / "traceback.txt").write_text(traceback.format_exc())
    return summary


def _write_results(
    job_dir: Path,
    job: dict[str, Any],
    protocol: Protocol,
    record: Any,
    result: Any,
    wall: float,
    versions: dict[str, str],
) -> None:
    arrays: dict[str, np.ndarray] = {
        "numbers": np.asarray(record.numbers, dtype=np.int64),
        "positions": np.asarray(record.positions, dtype=np.float64),
        "pbc": np.asarray(record.pbc, dtype=bool),
        "forces": np.asarray(result.forces, dtype=np.float64),
    }
    if record.cell is not None:
        arrays["cell"] = np.asarray(record.cell, dtype=np.float64)
    if result.stress is not None:
        arrays["stress"] = np.asarray(result.stress, dtype=np.float64)
    write_arrays(job_dir / RESULTS_NPZ, arrays)
    from importlib.metadata import version

    jobs.write_json_atomic(
        job_dir / RESULTS_JSON,
        {
            "record_id": job.get("record_id"),
            "protocol": protocol.name,
            "engine": protocol.engine,
            "method": protocol.method.name if protocol.method else None,
            "options": dict(protocol.method.options) if protocol.method else {},
            "energy": result.energy,
            "energy_unit": "eV",
            "energy_kind": "total",
            "charge": result.charge,
            "multiplicity": result.multiplicity,
            "converged": bool(result.converged),
            "n_scf": result.n_scf,
            "wall_time_s": wall,
            "versions": {**versions, "omni": version("omni"), "python": platform.python_version()},
            "host": socket.gethostname(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "arrays": RESULTS_NPZ,
            "has_stress": result.stress is not None,
            "info": result.info,
            "spin_source": result.spin_source,
            "warnings": list(result.warnings),
        },
    )
    _note_in_job(job_dir, result)


def _note_in_job(job_dir: Path, result: Any) -> None:
    """Write where charge/spin came from, and any warning, into job.json (the job's own record)."""
    job = jobs.read_job(job_dir)
    job.update(
        charge=result.charge,
        multiplicity=result.multiplicity,
        spin_source=result.spin_source,
        warnings=list(result.warnings),
    )
    jobs.write_json_atomic(job_dir / jobs.JOB_FILE, job)


ProgressCallback = Callable[[Counts, "dict[str, Any] | None"], None]
RUN_STATES: tuple[str, ...] = ("pending", "stale", "failed")


def jobs_to_run(root: Path, states: tuple[str, ...] = RUN_STATES) -> list[Path]:
    """Job dirs under ``root`` in ``states`` (default: not done and not running; a ``stale``
    job, left RUNNING by a process that is gone, is run again)."""
    return [s.path for s in jobs.summarize(root) if s.state in states]


def run_jobs(
    root: Path,
    protocol_name: str | None = None,
    client: Any = None,
    states: tuple[str, ...] = RUN_STATES,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """Run every job under ``root`` in ``states`` (default: not done, not running) as Dask tasks;
    returns their summaries in job order.

    ``client`` is a ``distributed.Client`` (from ``omni_data.pipeline.cluster.dask_client``), or
    None to run them one after another in this process. ``threads``: see run_job. ``progress``
    (e.g. ``progress.JobProgress()``) is called with the counts once at the start and after each
    job ends."""
    todo = [str(d) for d in jobs_to_run(root, states)]
    slots = sum(client.nthreads().values()) if client is not None else 1
    counts = Counts(total=len(todo), slots=max(1, slots))
    report = progress or (lambda counts, summary: None)
    report(counts, None)
    if client is None:
        return [_counted(run_job(d, protocol_name, threads), counts, report) for d in todo]
    from distributed import as_completed

    futures = client.map(run_job, todo, [protocol_name] * len(todo), [threads] * len(todo), pure=False)
    order = {f.key: i for i, f in enumerate(futures)}
    results: list[dict[str, Any]] = [{}] * len(todo)
    for future in as_completed(futures):
        results[order[future.key]] = _counted(future.result(), counts, report)
    return results


def _counted(summary: dict[str, Any], counts: Counts, report: ProgressCallback) -> dict[str, Any]:
    """Add a finished job to ``counts`` and report it; returns ``summary``."""
    if summary["state"] == "done":
        counts.done += 1
    else:
        counts.failed += 1
    report(counts, summary)
    return summary
