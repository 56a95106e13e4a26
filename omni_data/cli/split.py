"""``omni-data split STORE [--fractions 0.8 0.1 0.1] [--seed S] [--group-key KEY]``."""
from __future__ import annotations

import argparse

from omni_data.pipeline.cluster import add_cluster_arguments, config_from_args, dask_client


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="store directory")
    parser.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1),
                        metavar=("TRAIN", "VAL", "TEST"), help="split fractions (default 0.8 0.1 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="hash seed (default 0)")
    parser.add_argument("--group-key", help="group key for every dataset (default: each dataset's "
                                            "manifest group_key, or 'id' without a manifest)")
    add_cluster_arguments(parser)


def group_keys_from_manifests(datasets: list[str]) -> tuple[dict[str, str], list[str]]:
    """{dataset: group_key} from the manifests that exist, and the datasets without one."""
    from omni_data.manifest import list_manifests, load_manifest

    known = {}
    for name in list_manifests():
        m = load_manifest(name)
        known[m.dataset] = m.group_key
    return {d: known[d] for d in datasets if d in known}, [d for d in datasets if d not in known]


def run(args: argparse.Namespace) -> int:
    from omni_data.harmonize.splits import split_store
    from omni_data.store import Store

    store = Store(args.store)
    datasets = sorted(store.catalog.counts.get("by_dataset", {}))
    if args.group_key:
        keys, missing = {d: args.group_key for d in datasets}, []
    else:
        keys, missing = group_keys_from_manifests(datasets)
    for d in missing:
        print(f"note: dataset {d!r} has no manifest; grouping by 'id'")
    with dask_client(config_from_args(args)) as client:
        section = split_store(store.path, args.fractions, args.seed, keys, "id", client=client)
    print(f"split {sum(section['counts'].values())} records (seed {args.seed}):")
    for name, n in section["counts"].items():
        print(f"  {name:<6} {n}")
    for d, k in sorted(keys.items()):
        print(f"  dataset {d} grouped by {k}")
    return 0
