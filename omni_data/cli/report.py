"""``omni-data report STORE [STORE...] --out DIR``: an HTML page with PNG figures beside it."""

from __future__ import annotations

import argparse

from omni_data.cli.argtypes import out_dir
from omni_data.pipeline.cluster import (
    add_cluster_arguments,
    config_from_args,
    dask_client,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stores", nargs="+", help="store directories")
    parser.add_argument(
        "--out", type=out_dir, required=True, metavar="DIR", help="output folder (report.html and *.png)"
    )
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from omni_data.report.collect import check_distinct
    from omni_data.report.html import build_report

    check_distinct(args.stores)  # the same store twice: exit 2 before any work
    with dask_client(config_from_args(args)) as client:
        path = build_report(args.stores, args.out, client=client)
    print(f"wrote {path}")
    return 0
