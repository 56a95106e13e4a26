"""``omni-data jobs DIR``: state of recompute jobs (pending/running/stale/done/failed with reasons).

A job left RUNNING by a local run whose process is gone reads ``stale stale:pid N on HOST is no
longer running ...`` (``omni_data.recompute.jobs.stale_reason``); ``run-local`` runs it again.

Running jobs and SIGTERM failures are checked against Slurm (``omni_data.recompute.queue``):
a time limit reads ``failed timeout:...``, an scancel ``failed cancelled:...``, a batch job that
vanished ``failed lost:...``; ``--reemit-failed`` keeps that reason in the job's history.

``--reemit-failed`` re-creates failed jobs' inputs from their record.json and protocol;
``--write-script slurm|pbs --vasp-cmd CMD`` writes the batch script for the unfinished jobs.
Exit code 0 (this is a status report); errors in the jobs dir itself exit 2 (``omni_data.cli.errors``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omni_data.recompute.jobs import JobState

__all__ = [
    "add_batch_arguments",
    "write_script_from_args",
    "add_arguments",
    "reemit_failed",
    "job_summary",
    "job_line",
    "run",
]


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the VASP batch script (shared with ``emit-jobs``)."""
    g = parser.add_argument_group("batch script (VASP jobs)")
    g.add_argument(
        "--write-script", choices=("slurm", "pbs"), help="write submit.<scheduler> + a job list of the unfinished jobs"
    )
    g.add_argument(
        "--vasp-cmd",
        help="command that runs VASP in a job dir, e.g. 'srun vasp_std' (default for "
        "xTB/PySCF jobs: this Python running the local runner in the job dir)",
    )
    g.add_argument("--per-task", type=int, default=1, metavar="N", help="job dirs per array task (default 1)")
    g.add_argument("--job-name", default="omni-recompute")
    g.add_argument("--time", default="24:00:00", help="walltime per array task")
    g.add_argument("--partition", help="partition / queue")
    g.add_argument("--account", help="account / project")
    g.add_argument("--nodes", type=int, default=1)
    g.add_argument("--ntasks-per-node", type=int, help="MPI ranks per node")
    g.add_argument("--max-parallel", type=int, help="at most N array tasks at once (%%N)")
    g.add_argument(
        "--batch-opt", action="append", default=[], metavar="--KEY=VALUE", help="extra directive (repeatable)"
    )


def write_script_from_args(root: Path, args: argparse.Namespace) -> int:
    """Write the batch script if asked; returns 0 (a ValueError names what is wrong)."""
    from omni_data.recompute.slurm import BatchOptions, default_command, write_batch

    if not args.write_script:
        return 0
    try:
        command = args.vasp_cmd or default_command(root)
    except ValueError as exc:
        raise ValueError(f"{root}: --write-script: {exc}") from exc
    opts = BatchOptions(
        vasp_cmd=command,
        per_task=args.per_task,
        job_name=args.job_name,
        time=args.time,
        partition=args.partition,
        account=args.account,
        nodes=args.nodes,
        ntasks_per_node=args.ntasks_per_node,
        max_parallel=args.max_parallel,
        extra=list(args.batch_opt),
    )
    script, n = write_batch(root, opts, args.write_script)
    print(
        f"wrote {script} for {n} unfinished job(s); submit with: cd {root} && "
        f"{'sbatch' if args.write_script == 'slurm' else 'qsub'} {script.name}"
    )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, metavar="DIR", help="jobs directory written by emit-jobs")
    parser.add_argument(
        "--reemit-failed", action="store_true", help="re-create the inputs of failed jobs (clears FAILED)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per job")
    add_batch_arguments(parser)


def reemit_failed(root: Path) -> list[dict]:
    """Re-write every failed job dir from its record.json with its (current) protocol."""
    from omni_data.recompute import jobs
    from omni_data.recompute.emit import Source, emit_record
    from omni_data.recompute.protocols import load_protocol

    rows = []
    for state in jobs.summarize(root):
        if state.state != "failed":
            continue
        if state.reason != jobs.job_state(state.path).reason:
            jobs.keep_reason(state.path, state.reason)  # the history keeps what Slurm said (timeout, cancelled)
        job = state.job or {}
        record = jobs.read_record(state.path)
        source = Source(
            record_id=record.id,
            source_task=job.get("source_task", ""),
            dataset=job.get("dataset", ""),
            store=job.get("store", ""),
            rank=job.get("rank"),
            distance=job.get("distance"),
        )
        path = (job.get("protocol_spec") or {}).get("path")  # the file it was emitted from, if still there
        protocol = load_protocol(path if path and Path(path).is_file() else job["protocol"])
        rows.append(emit_record(record, protocol, root, source, force=True))
    return rows


def job_summary(state: JobState) -> dict:
    """One job's state with its provenance and history (the ``--json`` line)."""
    job = state.job or {}
    path = state.path
    return {
        "job": path.name,
        "state": state.state,
        "reason": state.reason,
        "record_id": job.get("record_id"),
        "source_task": job.get("source_task"),
        "dataset": job.get("dataset"),
        "protocol": job.get("protocol"),
        "protocol_sha256": job.get("protocol_sha256"),
        "engine": job.get("engine"),
        "input_writer": job.get("input_writer"),
        "omni_version": job.get("omni_version"),
        "created": job.get("created"),
        "job_dir": str(path.resolve()),
        "spin_source": job.get("spin_source"),
        "warnings": job.get("warnings") or [],
        "history": job.get("history") or [],
        "collected": (path / "COLLECTED").is_file(),
    }


def job_line(state: JobState) -> str:
    """``state  job  [reason]  protocol@sha12  [N earlier attempts]  [warnings]`` for the text listing."""
    d = job_summary(state)
    parts = [f"{d['state']:8s} {d['job']}"]
    if d["reason"]:
        parts.append(d["reason"])
    if d["protocol"]:
        parts.append(f"{d['protocol']}@{(d['protocol_sha256'] or 'unhashed')[:12]}")
    if d["history"]:
        last = d["history"][-1]
        parts.append(f"{len(d['history'])} earlier attempt(s), last {last.get('state')}: {last.get('reason') or '-'}")
    if d["warnings"]:
        parts.append("warning: " + "; ".join(d["warnings"]))
    return "  ".join(parts)


def run(args: argparse.Namespace) -> int:
    from omni_data.cli.errors import must_exist
    from omni_data.recompute import jobs

    root: Path = must_exist(args.root, "jobs directory", folder=True)
    if args.reemit_failed:
        rows = reemit_failed(root)
        for row in rows:
            print(f"re-emitted {row['job']}: {row['status']} {row['reason']}".rstrip())
    states = jobs.summarize(root)
    for s in states:
        if args.json:
            print(json.dumps(job_summary(s)))
        else:
            print(job_line(s))
    counts = Counter(s.state for s in states)
    print(" ".join(f"{k}={counts.get(k, 0)}" for k in jobs.STATES) + f" total={len(states)}", file=sys.stderr)
    return write_script_from_args(root, args)
