"""What the batch system says about the jobs that ran recompute job dirs (Slurm).

The array loop (``omni_data.recompute.slurm``) writes the batch job id into a dir's RUNNING
marker and, when SIGTERM stops it, into the FAILED reason. SIGTERM alone cannot tell a time
limit from ``scancel``, nor can a RUNNING marker tell a live job from one killed with SIGKILL, so
``omni-data jobs`` asks the scheduler, in this order:

1. ``scontrol -o show job`` (every job slurmctld still holds: running, pending, and finished ones
   for ``MinJobAge`` seconds, 300 by default);
2. ``sacct`` (finished jobs, where the site runs slurmdbd accounting);
3. the job's output file, where slurmstepd writes ``*** JOB N ON host CANCELLED AT ... ***``,
   with ``DUE TO TIME LIMIT`` for a time limit (found by the ``StdOut`` path, else as
   ``JOBS/logs/*-ARRAY_TASK.out`` / ``*-JOBID.out``, the names the batch scripts use).

Nothing here raises when Slurm is absent: no answer leaves the marker's state as it is.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BatchJob",
    "job_id_in",
    "parse_scontrol",
    "parse_sacct",
    "slurm_jobs",
    "state_from_log",
    "log_candidates",
    "explain",
    "stopped_reason",
]

# Slurm job states in which the job's processes may still run.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
    }
)
_JOB_ID = re.compile(r"\bjob (\d+)\b")
_ARRAY = re.compile(r"\barray (\d+)_(\d+)\b")
_TIMEOUT_S = 20


@dataclass(frozen=True)
class BatchJob:
    """One Slurm job as the scheduler (or its output file) reports it."""

    job_id: str
    state: str  # Slurm's JobState, e.g. RUNNING, TIMEOUT, CANCELLED, COMPLETED, FAILED
    time_limit: str = ""
    stdout: str = ""
    source: str = "scontrol"  # scontrol | sacct | log


def job_id_in(text: str) -> str | None:
    """The batch job id a marker or reason names (``... job 123 ...``), if any."""
    match = _JOB_ID.search(text)
    return match.group(1) if match else None


def _run(cmd: list[str]) -> str | None:
    """stdout of ``cmd``, or None when it is missing, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_scontrol(text: str) -> dict[str, BatchJob]:
    """Jobs from ``scontrol -o show job`` output (one ``Key=Value ...`` line per job)."""
    found: dict[str, BatchJob] = {}
    for line in text.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if "JobId" in fields and "JobState" in fields:
            found[fields["JobId"]] = BatchJob(
                fields["JobId"], fields["JobState"], fields.get("TimeLimit", ""), fields.get("StdOut", ""), "scontrol"
            )
    return found


def parse_sacct(text: str) -> dict[str, BatchJob]:
    """Jobs from ``sacct -n -P -X -o JobIDRaw,State,Timelimit`` output."""
    found: dict[str, BatchJob] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0].isdigit():
            found[parts[0]] = BatchJob(parts[0], parts[1].split()[0], parts[2], "", "sacct")  # "CANCELLED by 0"
    return found


def slurm_jobs(job_ids: set[str]) -> dict[str, BatchJob]:
    """What Slurm knows about ``job_ids``: one scontrol call, then sacct for the rest."""
    if not job_ids:
        return {}
    found = {k: v for k, v in parse_scontrol(_run(["scontrol", "-o", "show", "job"]) or "").items() if k in job_ids}
    rest = sorted(job_ids - set(found))
    if rest:
        out = _run(["sacct", "-n", "-P", "-X", "-o", "JobIDRaw,State,Timelimit", "-j", ",".join(rest)])
        found.update({k: v for k, v in parse_sacct(out or "").items() if k in job_ids})
    return found


def state_from_log(path: Path) -> str | None:
    """TIMEOUT or CANCELLED from slurmstepd's ``*** JOB N ... CANCELLED AT`` line, else None."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 65536))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = [ln for ln in tail.splitlines() if "*** JOB" in ln and "CANCELLED AT" in ln]
    if not lines:
        return None
    return "TIMEOUT" if "DUE TO TIME LIMIT" in lines[-1] else "CANCELLED"


def log_candidates(root: Path, reason: str, job_id: str) -> list[Path]:
    """Output files of the batch job named in ``reason`` under ``root/logs`` (array or plain)."""
    logs = Path(root) / "logs"
    if not logs.is_dir():
        return []
    match = _ARRAY.search(reason)
    patterns = ([f"*-{match.group(1)}_{match.group(2)}.out"] if match else []) + [f"*-{job_id}.out"]
    return [p for pattern in patterns for p in sorted(logs.glob(pattern))]


def explain(job: BatchJob | None, root: Path, reason: str, job_id: str) -> BatchJob | None:
    """The final state of the job that was stopped, from Slurm or, failing that, its log."""
    if job is not None and job.state not in ACTIVE_STATES:
        return job
    paths = ([Path(job.stdout)] if job is not None and job.stdout else []) + log_candidates(root, reason, job_id)
    for path in paths:
        state = state_from_log(path)
        if state:
            return BatchJob(job_id, state, job.time_limit if job else "", str(path), "log")
    return job


def stopped_reason(job: BatchJob) -> str:
    """A FAILED reason (``kind:detail``) for a job Slurm stopped."""
    where = f"(Slurm JobState={job.state}, from {job.source})"
    if job.state == "TIMEOUT":
        limit = f" of {job.time_limit}" if job.time_limit else ""
        return f"timeout:Slurm job {job.job_id} reached its time limit{limit}; resubmit with a longer --time {where}"
    if job.state == "CANCELLED":
        return f"cancelled:Slurm job {job.job_id} was cancelled (scancel or an administrator) {where}"
    return f"{job.state.lower()}:Slurm job {job.job_id} ended {job.state} before this job finished {where}"
