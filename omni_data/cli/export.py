"""``omni-data export STORE --format extxyz|aselmdb --out PATH [--task T] [--dataset D]``."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="store directory")
    parser.add_argument("--format", required=True, choices=("extxyz", "aselmdb"), help="output format")
    parser.add_argument("--out", type=Path, required=True, help="output file (.extxyz / .aselmdb)")
    parser.add_argument("--task", help="only records of this task")
    parser.add_argument("--dataset", help="only records of this dataset")


def run(args: argparse.Namespace) -> int:
    from omni_data.export import export_store
    from omni_data.store import Store

    n = export_store(Store(args.store), args.format, args.out, task=args.task, dataset=args.dataset)
    print(f"wrote {n} records to {args.out} ({args.format})")
    return 0 if n else 1
