"""``omni-data run-local DIR --method gfn2-xtb|gfn1-xtb|pyscf-pbe-def2svp``: run jobs with tblite/PySCF.

Each unfinished job is one Dask task (``--workers N`` local processes, ``--scheduler ADDRESS``,
or ``--no-cluster`` in this process). Without ``--method`` each job's own protocol is used.
Exit code 1 when any job failed (reasons are printed and kept in each job's FAILED file).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omni_data.cli.argtypes import bounded
from omni_data.pipeline.cluster import add_cluster_arguments, config_from_args
from omni_data.recompute.runners import LOCAL_METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, metavar="DIR", help="jobs directory written by emit-jobs")
    parser.add_argument("--method", choices=LOCAL_METHODS, help="local protocol to run (default: each job's protocol)")
    parser.add_argument("--rerun-failed", action="store_true", help="also run jobs marked failed (default: pending only)")
    parser.add_argument("--threads-per-job", type=bounded(int, 1), default=None, metavar="N",
                        help="OpenMP/BLAS threads per job (default: --threads-per-worker, i.e. 1)")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from omni_data.cli.errors import must_exist
    from omni_data.pipeline.cluster import dask_client
    from omni_data.recompute.local import run_jobs

    must_exist(args.root, "jobs directory", folder=True)

    states = ("pending", "failed") if args.rerun_failed else ("pending",)
    with dask_client(config_from_args(args)) as client:
        threads = args.threads_per_job or args.threads_per_worker
        results = run_jobs(args.root, args.method, client=client, states=states, threads=threads)
    failed = [r for r in results if r["state"] != "done"]
    for r in failed:
        print(f"failed {r['job']}: {r['reason']}", file=sys.stderr)
    print(f"{args.root}: {len(results) - len(failed)} done, {len(failed)} failed")
    return 1 if failed else 0
