"""Recompute job directories: their files, their state and the jobs table.

One directory per structure under a jobs root. Files a job dir may hold:

``job.json``      what the job is (record id, source task, protocol, engine, created)
``record.json``   the source structure (numbers, positions, cell, pbc, charge, spin, magmoms)
``INCAR``...      engine inputs (VASP) -- local engines read ``record.json``
``RUNNING``       written when a run starts (host, time); removed when it ends
``DONE``          the run finished; results are in the engine's output files
``FAILED``        the run or its collection failed; first line is the reason
``COLLECTED``     collect-bridge stored (or quarantined) this job; holds the shard name
``results.json``  + ``results.npz`` from the local runners

State is read from the markers (the Slurm script writes them from bash): FAILED > DONE >
RUNNING > pending. A VASP job without markers whose vasprun.xml is complete counts as done.
``summarize`` then checks RUNNING and SIGTERM failures against Slurm (``queue.py``): a time
limit reads ``timeout:``, an scancel ``cancelled:``, a job that vanished ``lost:``. A RUNNING
marker of no batch job is checked against its process (``with_liveness``): written on this host
by a pid that is no longer alive, or on another host and not refreshed (the runner's heartbeat
touches it every ``HEARTBEAT_S``) for ``LEASE_S``, the job is ``stale``, and ``run-local`` runs
it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.processes import pid_alive
from omni_data.schema import Record

__all__ = [
    "JobState",
    "write_text_atomic",
    "write_json_atomic",
    "record_to_json",
    "record_from_json",
    "read_job",
    "read_record",
    "iter_job_dirs",
    "vasprun_complete",
    "job_state",
    "mark_running",
    "Marker",
    "parse_marker",
    "stale_reason",
    "with_liveness",
    "heartbeat",
    "mark_done",
    "mark_failed",
    "keep_reason",
    "clear_markers",
    "replace_dir_atomic",
    "summarize",
    "with_queue_states",
    "write_table",
]

STATES: tuple[str, ...] = ("pending", "running", "stale", "done", "failed")
# a runner refreshes its RUNNING marker's mtime this often; another host's marker older than
# LEASE_S is taken as left behind by a run that died
HEARTBEAT_S = 60.0
LEASE_S = 600.0
_MARKER = re.compile(r"^(?P<host>\S+)(?: job (?P<batch>\S+))? pid (?P<pid>\d+)(?: since (?P<since>\S+))?")
JOB_FILE = "job.json"
RECORD_FILE = "record.json"
TABLE_NAME = "jobs.parquet"


@dataclass
class JobState:
    """The state of one job dir, with the failure reason when failed."""

    path: Path
    state: str
    reason: str = ""
    job: dict[str, Any] | None = None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def record_to_json(record: Record) -> dict[str, Any]:
    """The structure part of a record (what a recompute needs), JSON-ready."""
    r = record.normalized()
    return {
        "id": r.id,
        "dataset": r.dataset,
        "task": r.task,
        "numbers": r.numbers.tolist(),
        "positions": r.positions.tolist(),
        "cell": None if r.cell is None else r.cell.tolist(),
        "pbc": r.pbc.tolist(),
        "charge": r.charge,
        "spin": r.spin,
        "magmoms": None if r.magmoms is None else r.magmoms.tolist(),
    }


def record_from_json(data: dict[str, Any]) -> Record:
    """Inverse of ``record_to_json``."""
    return Record(
        numbers=np.asarray(data["numbers"], dtype=np.int64),
        positions=np.asarray(data["positions"], dtype=np.float64),
        id=data["id"],
        dataset=data.get("dataset", ""),
        task=data.get("task", ""),
        cell=None if data.get("cell") is None else np.asarray(data["cell"], dtype=np.float64),
        pbc=np.asarray(data.get("pbc", [False] * 3), dtype=bool),
        charge=data.get("charge"),
        spin=data.get("spin"),
        magmoms=None if data.get("magmoms") is None else np.asarray(data["magmoms"], dtype=np.float64),
    ).normalized()


def read_job(job_dir: Path) -> dict[str, Any]:
    """``job.json`` of a job dir; ValueError naming the file when missing or broken."""
    path = Path(job_dir) / JOB_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: missing; not a recompute job directory") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: broken JSON ({exc})") from None


def read_record(job_dir: Path) -> Record:
    path = Path(job_dir) / RECORD_FILE
    try:
        return record_from_json(json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{path}: cannot read the job's structure ({exc})") from None


def iter_job_dirs(root: Path) -> Iterator[Path]:
    """Every job dir (a folder holding job.json) directly under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: jobs directory does not exist")
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and (child / JOB_FILE).is_file():
            yield child


def vasprun_complete(job_dir: Path) -> bool:
    """True when vasprun.xml exists and ends with ``</modeling>`` (VASP closed it)."""
    path = Path(job_dir) / "vasprun.xml"
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 256))
        return b"</modeling>" in fh.read()


def job_state(job_dir: Path) -> JobState:
    """State of one job dir from its markers (see module docstring)."""
    job_dir = Path(job_dir)
    job = read_job(job_dir)
    failed = job_dir / "FAILED"
    if failed.is_file():
        reason = failed.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return JobState(job_dir, "failed", reason[0] if reason else "failed:no reason recorded", job)
    if (job_dir / "DONE").is_file():
        return JobState(job_dir, "done", "", job)
    if (job_dir / "RUNNING").is_file():
        return JobState(job_dir, "running", (job_dir / "RUNNING").read_text(errors="replace").strip(), job)
    if job.get("engine") == "vasp" and vasprun_complete(job_dir):
        return JobState(job_dir, "done", "", job)
    return JobState(job_dir, "pending", "", job)


def mark_running(job_dir: Path) -> None:
    """Write RUNNING: host, pid, and the batch job id when inside one (``summarize`` asks Slurm about it)."""
    batch = os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID")
    where = f" job {batch}" if batch else ""
    write_text_atomic(
        Path(job_dir) / "RUNNING",
        f"{socket.gethostname()}{where} pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n",
    )


@dataclass(frozen=True)
class Marker:
    """What a RUNNING marker says: the host and pid of the run, and its batch job id if any."""

    host: str
    pid: int
    batch: str | None
    since: str


def parse_marker(text: str) -> Marker | None:
    """The fields of a RUNNING marker (``host [job N] pid P since T``), None if it is not one."""
    match = _MARKER.match(text.strip())
    if not match:
        return None
    return Marker(match["host"], int(match["pid"]), match["batch"], match["since"] or "")


def stale_reason(job_dir: Path, marker_text: str, now: float | None = None) -> str | None:
    """Why a RUNNING marker was left behind by a run that is gone, or None while it may live.

    A marker naming a batch job is left to the scheduler checks (``with_queue_states``)."""
    marker = parse_marker(marker_text)
    if marker is None or marker.batch:
        return None
    if marker.host == socket.gethostname():
        if pid_alive(marker.pid):
            return None
        return (
            f"stale:pid {marker.pid} on {marker.host} is no longer running (started {marker.since}); "
            "run-local runs this job again"
        )
    try:
        age = (time.time() if now is None else now) - (Path(job_dir) / "RUNNING").stat().st_mtime
    except FileNotFoundError:
        return None
    if age <= LEASE_S:
        return None
    return (
        f"stale:no heartbeat from pid {marker.pid} on {marker.host} for {age / 60:.0f} min "
        f"(started {marker.since}); run-local runs this job again"
    )


def with_liveness(states: list[JobState]) -> list[JobState]:
    """Running jobs whose process is gone (``stale_reason``) become ``stale``."""
    out = []
    for s in states:
        why = stale_reason(s.path, s.reason) if s.state == "running" else None
        out.append(JobState(s.path, "stale", why, s.job) if why else s)
    return out


@contextlib.contextmanager
def heartbeat(job_dir: Path, every: float = HEARTBEAT_S) -> Iterator[None]:
    """Touch ``job_dir/RUNNING`` every ``every`` seconds while the body runs (a daemon thread),
    so another host can tell a long run from one that died (``stale_reason``)."""
    stop = threading.Event()
    marker = Path(job_dir) / "RUNNING"

    def beat() -> None:
        while not stop.wait(every):
            with contextlib.suppress(FileNotFoundError):
                os.utime(marker)

    thread = threading.Thread(target=beat, name=f"heartbeat-{Path(job_dir).name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def mark_done(job_dir: Path) -> None:
    write_text_atomic(Path(job_dir) / "DONE", time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    (Path(job_dir) / "RUNNING").unlink(missing_ok=True)


def mark_failed(job_dir: Path, reason: str) -> None:
    """Record why a job failed (first line of FAILED); clears RUNNING and DONE."""
    write_text_atomic(Path(job_dir) / "FAILED", reason.strip().replace("\n", " ") + "\n")
    (Path(job_dir) / "RUNNING").unlink(missing_ok=True)
    (Path(job_dir) / "DONE").unlink(missing_ok=True)


def keep_reason(job_dir: Path, reason: str) -> None:
    """Write ``reason`` as a failed job's FAILED line, keeping the file's time (when it failed)."""
    failed = Path(job_dir) / "FAILED"
    stat = failed.stat()
    mark_failed(job_dir, reason)
    os.utime(failed, (stat.st_atime, stat.st_mtime))


def clear_markers(job_dir: Path) -> None:
    for name in ("RUNNING", "DONE", "FAILED", "COLLECTED"):
        (Path(job_dir) / name).unlink(missing_ok=True)


def replace_dir_atomic(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written ``tmp_dir`` to ``final_dir``, replacing an older one."""
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old)


def summarize(root: Path, ask_queue: bool = True) -> list[JobState]:
    """State of every job under ``root``, a running one whose process is gone as ``stale``
    (``with_liveness``); with ``ask_queue``, checked against the batch system (``with_queue_states``)."""
    states = with_liveness([job_state(d) for d in iter_job_dirs(root)])
    return with_queue_states(root, states) if ask_queue else states


SIGTERM_MARK = "killed by SIGTERM"


def with_queue_states(root: Path, states: list[JobState]) -> list[JobState]:
    """Refine marker states with what Slurm says about the batch job each marker names.

    * failed by SIGTERM -> ``timeout:...`` or ``cancelled:...`` (Slurm's JobState, else the
      job's output file), so a time limit and an ``scancel`` read differently;
    * running, Slurm job still active -> the reason gains ``(Slurm: RUNNING)``;
    * running, Slurm job over (killed hard, node lost) -> failed ``lost:...``, so it is resubmitted.
    A job Slurm does not know (or no Slurm here) keeps its marker state."""
    from omni_data.recompute import queue

    wanted: dict[int, str] = {}
    for i, s in enumerate(states):
        if s.state == "running" or (s.state == "failed" and SIGTERM_MARK in s.reason):
            job_id = queue.job_id_in(s.reason)
            if job_id:
                wanted[i] = job_id
    known = queue.slurm_jobs(set(wanted.values()))
    out = list(states)
    for i, job_id in wanted.items():
        s, job = states[i], known.get(job_id)
        if s.state == "failed":
            job = queue.explain(job, Path(root), s.reason, job_id)
            if job is not None and job.state not in queue.ACTIVE_STATES:
                out[i] = JobState(s.path, "failed", queue.stopped_reason(job), s.job)
        elif job is not None and job.state in queue.ACTIVE_STATES:
            out[i] = JobState(s.path, "running", f"{s.reason} (Slurm: {job.state})", s.job)
        elif job is not None:
            out[i] = JobState(
                s.path,
                "failed",
                f"lost:Slurm job {job_id} ended {job.state} without finishing this "
                f"job (its RUNNING marker was left behind: {s.reason})",
                s.job,
            )
    return out


def write_table(root: Path, rows: list[dict[str, Any]]) -> Path:
    """Write the jobs table (``jobs.parquet`` and ``jobs.csv``) atomically; returns the parquet path."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    columns = ["job", "record_id", "source_task", "dataset", "protocol", "engine", "status", "reason", "n_atoms"]
    table = (
        pa.table({c: [r.get(c) for r in rows] for c in columns})
        if rows
        else pa.table({c: pa.array([], pa.string()) for c in columns})
    )
    root = Path(root)
    path = root / TABLE_NAME
    tmp = root / f".{TABLE_NAME}.tmp-{os.getpid()}"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    tmp_csv = root / f".jobs.csv.tmp-{os.getpid()}"
    pacsv.write_csv(table, tmp_csv)
    os.replace(tmp_csv, root / "jobs.csv")
    return path
