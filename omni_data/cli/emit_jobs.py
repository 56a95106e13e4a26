"""``omni-data emit-jobs SELECTION --protocol NAME --out DIR``: one recompute job dir per structure.

SELECTION is a selection.parquet from ``select-bridge`` (columns id, task, dataset, store, rank,
distance). Structures the protocol refuses are listed with their reason (and in jobs.parquet).
With ``--write-script slurm --vasp-cmd CMD`` the batch script is written too.
Exit code 0 when the jobs were written (refusals are an expected outcome, e.g. charged molecules
under a VASP protocol, and are listed); 1 with ``--strict`` when any was refused or when SELECTION is
missing; 2 on bad input (``omni_data.cli.errors``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omni_data.cli.argtypes import out_dir
from omni_data.cli.jobs import add_batch_arguments, write_script_from_args

__all__ = ["add_arguments", "run"]

INTERRUPTED = "interrupted; re-run the same command to write the remaining job dirs"
"""Ctrl-C's line (``omni_data.cli.main``): each job dir is written whole or not at all."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("selection", type=Path, metavar="SELECTION", help="selection.parquet")
    parser.add_argument(
        "--protocol", required=True, help="protocol name (manifests/protocols/NAME.yaml) or a YAML path"
    )
    parser.add_argument("--out", type=out_dir, required=True, metavar="DIR", help="jobs directory (created if new)")
    parser.add_argument("--force", action="store_true", help="re-write finished jobs too")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any structure was refused")
    add_batch_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from omni_data.cli.errors import must_exist
    from omni_data.recompute.emit import emit_selection
    from omni_data.recompute.protocols import load_protocol

    protocol = load_protocol(args.protocol)
    must_exist(args.selection, "selection file")
    rows = emit_selection(args.selection, protocol, args.out, force=args.force)
    refused = [r for r in rows if r["status"] == "refused"]
    for r in refused:
        print(f"refused {r['record_id']}: {r['reason']}", file=sys.stderr)
    kept = sum(r["status"] in ("done", "running") for r in rows)
    print(
        f"{args.out}: {len(rows) - len(refused) - kept} job dir(s) written, {kept} kept (finished/running), "
        f"{len(refused)} refused; table {args.out / 'jobs.parquet'}"
    )
    rc = write_script_from_args(args.out, args)
    return rc or (1 if refused and args.strict else 0)
