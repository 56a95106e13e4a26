"""``omni-data index STORE``: index the ids of shards the store's id index does not cover yet.

``omni-data ingest`` does this at the end of a run; run it by hand after ``--no-id-index`` or
``--rebuild`` to merge all segments into one (``omni_data/store/idindex.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="store directory")
    parser.add_argument("--rebuild", action="store_true", help="index every shard into one new segment")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from omni_data.cli.errors import runtime_phase
    from omni_data.store.idindex import build_id_index

    if not (args.store / "catalog.json").is_file():
        raise FileNotFoundError(f"{args.store}: not a store (no catalog.json)")
    with runtime_phase():  # a damaged shard or a full disk is exit 1
        report = build_id_index(args.store, rebuild=args.rebuild, progress=not args.no_progress)
    print(report.line())
    for rel in report.removed:
        print(f"removed the replaced segment {rel}")
    return 0
