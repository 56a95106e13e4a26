"""``omni-data export STORE --format extxyz|aselmdb --out PATH [--task T] [--dataset D]``.

``--format`` offers the rows of ``omni_data.export.EXPORTERS``. The output is written to a
temp name beside it and renamed into place only when complete: a failed or empty export leaves
no file. ``--out`` must be a file in an existing folder (refused while parsing otherwise).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omni_data.cli.argtypes import out_file

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from omni_data.export import EXPORT_FORMATS

    parser.add_argument("store", type=Path, help="store directory")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="output format")
    parser.add_argument("--out", type=out_file, required=True, help="output file (.extxyz / .aselmdb)")
    parser.add_argument("--task", help="only records of this task")
    parser.add_argument("--dataset", help="only records of this dataset")


def run(args: argparse.Namespace) -> int:
    from omni_data.cli.errors import must_exist
    from omni_data.export import export_store
    from omni_data.store import Store

    store = Store(must_exist(args.store, "store", folder=True))
    n = export_store(store, args.format, args.out, task=args.task, dataset=args.dataset)
    print(f"wrote {n} records to {args.out} ({args.format})")
    return 0
