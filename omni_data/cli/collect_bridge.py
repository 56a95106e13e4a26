"""``omni-data collect-bridge DIR --out STORE [--task bridge]``: finished jobs -> bridge records.

Converged results become records of the bridge task (linked to their source by
metadata source_id/source_task/protocol); unusable ones go to the store's quarantine with the
reason and are marked FAILED in their job dir. Each run writes one new shard with only the jobs
not collected before. Exit code 0 when the shard was written (quarantined jobs are the expected
outcome for some VASP runs and are listed); 1 with ``--strict`` when any job was quarantined
or when DIR is missing; 2 on bad input (``omni_data.cli.errors``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from omni_data.cli.argtypes import out_dir

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, metavar="DIR", help="jobs directory")
    parser.add_argument("--out", type=out_dir, required=True, metavar="STORE", help="store to add the bridge shard to")
    parser.add_argument("--task", default="bridge", help="task name of the records (default bridge)")
    parser.add_argument("--dataset", default="bridge", help="dataset name of the records (default bridge)")
    parser.add_argument("--shard", help="shard name (default bridge-<jobsdir>-<time>)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any job was quarantined")


def run(args: argparse.Namespace) -> int:
    from omni_data.cli.errors import must_exist
    from omni_data.recompute.collect import collect_to_store

    must_exist(args.root, "jobs directory", folder=True)

    found, shard = collect_to_store(args.root, args.out, task=args.task, dataset=args.dataset, shard=args.shard)
    for rej in found.rejected:
        print(f"rejected {rej.source_id}: {rej.reason}", file=sys.stderr)
    waiting = Counter(found.not_ready.values())
    print(
        f"{args.root}: {len(found.records)} record(s) -> {args.out} shard {shard or '(none)'}, "
        f"{len(found.rejected)} quarantined, not ready: {dict(waiting) or 0}"
    )
    return 1 if found.rejected and args.strict else 0
