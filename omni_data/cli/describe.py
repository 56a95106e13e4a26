"""``omni-data describe STORE``: one descriptor vector per structure, as per-shard sidecars."""
from __future__ import annotations

import argparse
import json

from omni_data.cli.argtypes import bounded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from omni_data.pipeline.cluster import add_cluster_arguments

    parser.add_argument("store", help="store directory")
    parser.add_argument("--kind", choices=("rdf", "soap"), default="rdf",
                        help="rdf: composition + element-class radial features (default, 64 numbers); "
                             "soap: averaged SOAP (needs dscribe)")
    parser.add_argument("--cutoff", type=bounded(float, 0.0, strict=True), default=5.0, help="radial cutoff in Å (default 5)")
    parser.add_argument("--gaussians", type=bounded(int, 1), default=8,
                        help="Gaussians per element-class pair (dimension 16 + 6 x this; default 8)")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from omni_data.pipeline.cluster import config_from_args, dask_client
    from omni_data.select.descriptors import RDFSpec
    from omni_data.select.sidecars import describe_store

    spec = RDFSpec(cutoff=args.cutoff, n_gaussians=args.gaussians)
    with dask_client(config_from_args(args)) as client:
        done = describe_store(args.store, args.kind, spec, client)
    rows = sum(d["rows"] for d in done)
    skipped = sum(1 for d in done if d["skipped"])
    print(json.dumps({"store": args.store, "kind": args.kind, "shards": len(done),
                      "skipped_shards": skipped, "rows": rows}))
    return 0
