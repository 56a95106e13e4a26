"""``omni-data dedup STORE [STORE...] [--drop-within-task --out NEWSTORE]``: duplicate frames."""

from __future__ import annotations

import argparse
import json

from omni_data.cli.argtypes import bounded, out_dir
from omni_data.pipeline.cluster import (
    add_cluster_arguments,
    config_from_args,
    dask_client,
)

__all__ = ["add_arguments", "run"]

INTERRUPTED = "interrupted; if --out was given, remove that incomplete store before re-running"
"""Ctrl-C's line (``omni_data.cli.main``): a re-run refuses an existing --out store."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stores", nargs="+", help="store directories (duplicates are found across all)")
    parser.add_argument(
        "--tol", type=bounded(float, 0.0, strict=True), default=None, help="position tolerance in Å (default 1e-4)"
    )
    parser.add_argument(
        "--drop-within-task", action="store_true", help="write a store keeping the first frame of each (task, hash)"
    )
    parser.add_argument("--out", type=out_dir, metavar="NEWSTORE", help="the new store for --drop-within-task")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (for machines)")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from omni_data.harmonize import dedup
    from omni_data.store import Store

    if args.drop_within_task and not args.out:
        raise ValueError("--drop-within-task needs --out NEWSTORE")
    if args.out and args.out.exists():  # checked before hours of hashing, not after
        raise ValueError(f"{args.out}: already exists; --out must name a new store folder")
    tol = dedup.DEFAULT_TOL if args.tol is None else args.tol
    with dask_client(config_from_args(args)) as client:
        table = dedup.hash_stores(args.stores, tol=tol, client=client)
    summary = dedup.summarize(table, tol)
    for path in args.stores:  # every store records the joint result
        Store(path).catalog.update_section(dedup.SECTION, {**summary, "stores": list(args.stores)})
    dropped = dedup.drop_within_task(table, args.stores, str(args.out)) if args.drop_within_task else None
    if args.json:
        out = {**summary, "stores": list(args.stores), "dropped": dropped}
        print(json.dumps(out, indent=1, sort_keys=True))
        return 0
    print(f"{summary['records']} frames, {summary['unique']} distinct (tol {tol:g} Å)")
    for task, n in sorted(summary["within_task"].items()):
        print(f"  task {task:<20} {n} duplicate frame(s)")
    print(f"  hashes shared by two or more datasets: {summary['across_datasets']}")
    for ids in summary["examples"][:5]:
        print("  e.g. " + " = ".join(ids))
    if dropped is not None:
        print(f"wrote {args.out}: kept {dropped['kept']}, dropped {dropped['dropped']} (in its quarantine)")
    return 0
