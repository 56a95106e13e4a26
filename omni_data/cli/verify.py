"""``omni-data verify STORE``: recompute every shard's sha256 and record count against the catalog."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="store directory")
    parser.add_argument("--quiet", action="store_true", help="print only problems")


def run(args: argparse.Namespace) -> int:
    from omni_data.store.verify import verify_store

    if not (args.store / "catalog.json").is_file():
        raise FileNotFoundError(f"{args.store}: not a store (no catalog.json)")
    report = verify_store(args.store)
    for problem in report.problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    if args.quiet:  # leftovers are not problems, but a user cleaning up a store must see them
        for rel in report.temporaries:
            print(f"leftover temporary file {rel} (run without --quiet for details)", file=sys.stderr)
    else:
        for note in report.notes:
            print(f"note {note}")
        state = "OK" if report.ok else f"{len(report.problems)} problem(s)"
        print(f"{args.store}: {report.shards} shards, {report.files} files checked: {state}")
    return 0 if report.ok else 1
