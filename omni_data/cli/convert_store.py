"""``omni-data convert-store OLD NEW``: rewrite a store of store format 1 as store format 2.

Every record, quarantine file, section, run and sidecar is carried over; OLD is only read
(``omni_data/store/convert.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", type=Path, help="store of store format 1")
    parser.add_argument("new", type=Path, help="new store folder (must not exist or be empty)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json

    from omni_data.cli.errors import runtime_phase
    from omni_data.store.catalog import STORE_FORMAT
    from omni_data.store.convert import convert_store

    if not (args.old / "catalog.json").is_file():
        raise FileNotFoundError(f"{args.old}: not a store (no catalog.json)")
    try:
        fmt = json.loads((args.old / "catalog.json").read_text(encoding="utf-8")).get("store_format", 1)
    except (ValueError, AttributeError):
        fmt = None  # convert_store says what is wrong
    if fmt == STORE_FORMAT:
        raise ValueError(f"{args.old}: already store format {STORE_FORMAT}; nothing to convert")
    with runtime_phase():
        summary = convert_store(args.old, args.new, progress=not args.no_progress)
    print(
        f"{args.new}: {summary['records']:,} records in {summary['shards']} shards, "
        f"{summary['new_bytes']:,} bytes of shard files (store format 1: {summary['old_bytes']:,})"
    )
    return 0
