"""``omni-data demo [--out DIR] [--size small|ci] [--workers N] [--fresh]``: the embedded end-to-end demo.

Generates a small multi-domain corpus with real cheap calculations (EMT metals in an ASE db,
GFN1-xTB crystals in extxyz, GFN2-xTB molecules in SPICE HDF5), ingests it, fits references,
selects and recomputes a bridging set with GFN1-xTB, trains three models (plain multi-task,
+ selective regularization, + bridging set) and prints same-domain and cross-domain errors.

The demo itself is ``omni_model.demo`` (it needs both packages; omni_data never imports
omni_model). This command is its face: it parses the options and imports the demo when run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from omni_data.cli.argtypes import bounded

__all__ = ["add_arguments", "run"]

SIZES = ("small", "ci")
"""The demo sizes (``omni_model.demo.generate.SIZES``; a test checks they agree)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("omni-demo"), help="demo directory (default ./omni-demo)")
    parser.add_argument(
        "--size",
        choices=SIZES,
        default="small",
        help="small: 708 structures, several minutes on 2 cores (docs/demo.md); ci: 141 structures, what the tests run",
    )
    parser.add_argument(
        "--workers",
        type=bounded(int, 1),
        default=min(2, os.cpu_count() or 1),
        help="processes for labelling, ingest, describe, select and recompute, and trainings run at a "
        "time (one torch thread each); default min(2, cores); 1: all in this process",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of generation, selection and training")
    parser.add_argument(
        "--seeds",
        type=bounded(int, 1),
        default=None,
        help="training runs per variant (seeds SEED, SEED+1, ...; default 3 for --size small, 1 for ci); "
        "the report gives mean ± std",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start over: clear what an earlier run wrote into --out (default: re-running resumes, "
        "reusing every stage that finished on the same inputs)",
    )


def run(args: argparse.Namespace) -> int:
    from omni_model.demo.run import run_demo  # the face may know both packages

    results = run_demo(
        args.out, size=args.size, workers=args.workers, seed=args.seed, seeds=args.seeds, fresh=args.fresh
    )
    failed = [name for name, r in results.items() if r["status"] != "ok"]
    return 1 if failed else 0
