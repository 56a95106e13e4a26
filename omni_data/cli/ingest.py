"""``omni-data ingest NAME|PATH --source PATH --out STORE``: read a dataset into a sharded store.

NAME is a manifest name (``manifests/NAME.yaml``) or a manifest YAML path; a plain data PATH
works too with ``--format`` (or a sniffed format) and ``--dataset``/``--task``. This module only
parses: ``omni_data.pipeline.request.run_ingest`` does the work (the demo and ``pipelines/`` call
it too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omni_data.cli.argtypes import out_dir
from omni_data.pipeline.cluster import add_cluster_arguments, config_from_args
from omni_data.store.writer import FORMATS
from omni_data.units import STRESS_UNITS

__all__ = ["add_arguments", "request_from_args", "build_spec", "run"]

INTERRUPTED = "interrupted; re-run the same command to resume"
"""Ctrl-C's line (``omni_data.cli.main``): finished shards are kept and skipped on the re-run."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="NAME|PATH", help="manifest name, manifest .yaml, or a data file/folder")
    parser.add_argument("--source", type=Path, help="where the source files are (file or folder); default: PATH")
    parser.add_argument("--out", type=out_dir, required=True, metavar="STORE", help="store directory (created if new)")
    parser.add_argument("--format", help="reader name (default: the manifest's, else sniffed from the file)")
    parser.add_argument("--dataset", help="dataset name (plain PATH mode; overrides the manifest)")
    parser.add_argument("--task", help="task name, e.g. the level of theory (plain PATH mode; overrides the manifest)")
    parser.add_argument("--energy-unit", default=None, help="source energy unit (default: the manifest's, else eV)")
    parser.add_argument(
        "--stress-unit",
        default=None,
        choices=sorted(STRESS_UNITS),
        help="source stress unit, ASE sign (default: the manifest's, else eV/Å^3)",
    )
    parser.add_argument(
        "--key-map",
        action="append",
        default=[],
        metavar="FIELD=KEY",
        help="read FIELD from the source key KEY, e.g. energy=potential-energy (repeatable)",
    )
    parser.add_argument(
        "--no-sanity-bounds",
        action="store_true",
        help="store values outside the default sanity bounds (see docs/harmonize.md)",
    )
    parser.add_argument("--shard-size", type=int, default=10_000, metavar="N", help="records per shard (default 10000)")
    parser.add_argument(
        "--shard-formats",
        default=",".join(FORMATS),
        help="kept for scripts of store format 1 (arrow,lmdb): every shard is now written as "
        "LMDB records + Parquet columns",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-id-index",
        action="store_true",
        help="skip indexing the new shards' ids at the end (store.get(id) then asks each new "
        "shard; run `omni-data index STORE` later)",
    )
    add_cluster_arguments(parser)


def request_from_args(args: argparse.Namespace):
    """The ``IngestRequest`` the parsed options describe."""
    from omni_data.pipeline.request import IngestRequest

    return IngestRequest(
        target=args.target,
        out=args.out,
        source=args.source,
        format=args.format,
        dataset=args.dataset,
        task=args.task,
        energy_unit=args.energy_unit,
        stress_unit=args.stress_unit,
        key_map=list(args.key_map),
        shard_size=args.shard_size,
        formats=tuple(args.shard_formats.split(",")),
        id_index=not args.no_id_index,
        progress=not args.no_progress,
        sanity=not args.no_sanity_bounds,
        cluster=config_from_args(args),
        command=["omni-data", "ingest", *sys.argv[2:]],
    )


def build_spec(args: argparse.Namespace):
    """The ``IngestSpec`` the options describe (kept for callers of the old interface)."""
    from omni_data.pipeline.resolve import build_spec as resolve

    return resolve(request_from_args(args))


def run(args: argparse.Namespace) -> int:
    from omni_data.pipeline.request import all_quarantined_message, run_ingest

    summary = run_ingest(request_from_args(args), echo=lambda line: print(line, file=sys.stderr))
    for line in summary.lines():
        print(line)
    if summary.all_quarantined:
        print(
            f"omni-data ingest: error: {all_quarantined_message(args.source or Path(args.target), summary)}",
            file=sys.stderr,
        )
        return 1
    return 0 if summary.ok else 1
