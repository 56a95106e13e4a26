"""``omni-data filter STORE --manifest NAME [--out NEWSTORE]``: apply a manifest's filters."""

from __future__ import annotations

import argparse

from omni_data.cli.argtypes import out_dir
from omni_data.pipeline.cluster import (
    add_cluster_arguments,
    config_from_args,
    dask_client,
)

__all__ = ["add_arguments", "run"]

INTERRUPTED = "interrupted; if --out was given, remove that incomplete store before re-running"
"""Ctrl-C's line (``omni_data.cli.main``): the re-run cannot write a shard the --out store already has."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="store directory")
    parser.add_argument("--manifest", required=True, help="manifest name or YAML path whose filters apply")
    parser.add_argument(
        "--all-datasets", action="store_true", help="filter every record, not only those of the manifest's dataset"
    )
    parser.add_argument(
        "--out",
        type=out_dir,
        metavar="NEWSTORE",
        help="write kept records to this new store (drops -> its quarantine); "
        "without it only the per-shard masks (sidecars/filter) are written",
    )
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from omni_data.harmonize.filters import filter_store
    from omni_data.manifest import load_manifest

    manifest = load_manifest(args.manifest)
    dataset = None if args.all_datasets else manifest.dataset
    with dask_client(config_from_args(args)) as client:
        section = filter_store(
            args.store, manifest.filters, dataset, None if args.out is None else str(args.out), client=client
        )
    scope = "all datasets" if dataset is None else f"dataset {dataset!r}"
    print(f"filters of {manifest.name} on {scope}: {section['dropped']} of {section['records']} dropped")
    for reason, n in sorted(section["by_reason"].items()):
        print(f"  {reason:<28} {n}")
    print(f"masks: {args.store}/sidecars/filter/" + (f"; filtered store: {args.out}" if args.out else ""))
    return 0
