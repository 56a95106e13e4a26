"""``omni-data describe STORE``: one descriptor vector per structure, as per-shard sidecars."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omni_data.cli.argtypes import bounded

__all__ = ["add_arguments", "run", "summary_text"]

INTERRUPTED = "interrupted; re-run the same command to resume (shards already described are skipped)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from omni_data.pipeline.cluster import add_cluster_arguments

    parser.add_argument("store", help="store directory")
    from omni_data.select.descriptors import DESCRIPTORS

    parser.add_argument(
        "--kind",
        choices=list(DESCRIPTORS),
        default="rdf",
        help="; ".join(f"{name}: {kind.help}" for name, kind in DESCRIPTORS.items()),
    )
    parser.add_argument(
        "--cutoff", type=bounded(float, 0.0, strict=True), default=5.0, help="radial cutoff in Å (default 5)"
    )
    parser.add_argument(
        "--gaussians",
        type=bounded(int, 1),
        default=8,
        help="Gaussians per element-class pair (dimension 16 + 6 x this; default 8)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (for scripts)")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from omni_data.pipeline.cluster import config_from_args, dask_client
    from omni_data.select.descriptors import RDFSpec
    from omni_data.select.sidecars import describe_store, sidecar_kind

    spec = RDFSpec(cutoff=args.cutoff, n_gaussians=args.gaussians)
    with dask_client(config_from_args(args)) as client:
        done = describe_store(args.store, args.kind, spec, client)
    rows = sum(d["rows"] for d in done)
    skipped = sum(1 for d in done if d["skipped"])
    summary = {
        "store": args.store,
        "kind": args.kind,
        "shards": len(done),
        "skipped_shards": skipped,
        "rows": rows,
        "sidecars": str(Path(args.store) / "sidecars" / sidecar_kind(args.kind)),
    }
    print(json.dumps(summary) if args.json else summary_text(summary))
    return 0


def summary_text(summary: dict) -> str:
    """What was described, for a person."""
    done = summary["shards"] - summary["skipped_shards"]
    skipped = f"; {summary['skipped_shards']} already up to date, skipped" if summary["skipped_shards"] else ""
    return (
        f"describe: {summary['rows']:,} structures in {summary['shards']} shards of {summary['store']} "
        f"have {summary['kind']} descriptors ({done} shards described now{skipped})\n"
        f"wrote {summary['sidecars']}/<shard>.npz"
    )
