"""``omni-data run-local DIR [--method NAME]``: run recompute jobs with tblite/PySCF.

Each unfinished job is one Dask task (``--workers N`` local processes, ``--scheduler ADDRESS``,
or ``--no-cluster`` in this process). Without ``--method`` each job's own protocol is used;
``--method`` offers every protocol a local runner can run (``recompute.runners.local_methods``).
Pending jobs run, and so do stale ones: a job left RUNNING by a run that was interrupted or
killed (its process is gone, see ``recompute.jobs.stale_reason``), so re-running the command
resumes the batch. One progress line per finished job goes to stderr (counts, elapsed, ETA).
Exit code 1 when any job failed (reasons are printed and kept in each job's FAILED file).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from omni_data.cli.argtypes import bounded
from omni_data.pipeline.cluster import add_cluster_arguments, config_from_args

__all__ = ["add_arguments", "nothing_to_run", "run"]

INTERRUPTED = "interrupted; re-run the same command to resume"
"""Ctrl-C's line (``omni_data.cli.main``): finished jobs are kept, the interrupted one is stale and runs again."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from omni_data.recompute.runners import local_methods

    parser.add_argument("root", type=Path, metavar="DIR", help="jobs directory written by emit-jobs")
    parser.add_argument(
        "--method", choices=sorted(local_methods()), help="local protocol to run (default: each job's protocol)"
    )
    parser.add_argument(
        "--rerun-failed", action="store_true", help="also run jobs marked failed (default: pending and stale jobs only)"
    )
    parser.add_argument(
        "--threads-per-job",
        type=bounded(int, 1),
        default=None,
        metavar="N",
        help="OpenMP/BLAS threads per job (default: --threads-per-worker, i.e. 1)",
    )
    add_cluster_arguments(parser)


def nothing_to_run(root: Path, rerun_failed: bool) -> str:
    """What the jobs under ``root`` are when none is left to run (so exit 0 is not a mystery)."""
    from omni_data.recompute import jobs

    counts = Counter(s.state for s in jobs.summarize(root))
    if not counts:
        return f"{root}: no job directories (write them with omni-data emit-jobs)"
    tally = ", ".join(f"{counts[k]} {k}" for k in jobs.STATES if counts.get(k))
    hint = (
        "; run again with --rerun-failed to retry the failed ones" if counts.get("failed") and not rerun_failed else ""
    )
    hint += "; running jobs belong to a live process (see omni-data jobs)" if counts.get("running") else ""
    return f"{root}: nothing to run ({tally}){hint}"


def run(args: argparse.Namespace) -> int:
    from omni_data.cli.errors import must_exist
    from omni_data.pipeline.cluster import dask_client
    from omni_data.recompute.local import jobs_to_run, run_jobs
    from omni_data.recompute.progress import JobProgress

    must_exist(args.root, "jobs directory", folder=True)
    states = ("pending", "stale", "failed") if args.rerun_failed else ("pending", "stale")
    if not jobs_to_run(args.root, states):
        print(nothing_to_run(args.root, args.rerun_failed))
        return 0
    with dask_client(config_from_args(args)) as client:
        threads = args.threads_per_job or args.threads_per_worker
        results = run_jobs(
            args.root, args.method, client=client, states=states, threads=threads, progress=JobProgress("run-local")
        )
    failed = [r for r in results if r["state"] != "done"]
    for r in failed:
        print(f"failed {r['job']}: {r['reason']}", file=sys.stderr)
    print(f"{args.root}: {len(results) - len(failed)} done, {len(failed)} failed")
    return 1 if failed else 0
