"""``omni-data split STORE [--fractions 0.8 0.1 0.1] [--seed S] [--group-key KEY] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys

from omni_data.pipeline.cluster import add_cluster_arguments, config_from_args, dask_client

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="store directory")
    parser.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VAL", "TEST"),
        help="split fractions (default 0.8 0.1 0.1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="hash seed (default 0)")
    from omni_data.harmonize.grouping import NATURAL_KEYS
    from omni_data.harmonize.splits import DERIVED_KEYS, RECORD_FIELDS

    parser.add_argument(
        "--group-key",
        help=(
            f"group key for every dataset: a record field ({', '.join(RECORD_FIELDS)}), metadata.NAME, "
            f"or a derived key ({', '.join(DERIVED_KEYS)}). Default: each dataset's manifest group_key, "
            f"else a group its records carry (metadata {', '.join(NATURAL_KEYS)}), else 'id'"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the catalog section as JSON")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from omni_data.harmonize.grouping import plan_groups
    from omni_data.harmonize.splits import check_fractions, split_store
    from omni_data.store import Store

    check_fractions(args.fractions)
    store = Store(args.store)
    plan = plan_groups(store, args.group_key)
    with dask_client(config_from_args(args)) as client:
        section = split_store(
            store.path, args.fractions, args.seed, plan.keys, "id", client=client, warnings=plan.warnings()
        )
    if args.json:
        print(json.dumps(section, indent=1, sort_keys=True))
    else:
        for line in plan.notes():
            print(f"note: {line}")
        print(f"split {sum(section['counts'].values())} records (seed {args.seed}):")
        for name, n in section["counts"].items():
            print(f"  {name:<6} {n}")
        for d, g in sorted(plan.datasets.items()):
            print(f"  dataset {d} grouped by {g.key} ({g.origin})")
    sys.stdout.flush()  # the warnings come last, where they are seen
    for line in section["warnings"]:
        print(f"omni-data split: warning: {line}", file=sys.stderr)
    return 0
