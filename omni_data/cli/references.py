"""``omni-data references STORE [--ridge L] [--split S] [--json]``: fit, store and print the
per-element reference energies of every task."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from omni_data.pipeline.cluster import add_cluster_arguments, config_from_args, dask_client

if TYPE_CHECKING:
    from omni_data.harmonize.references import TaskReferences

__all__ = ["add_arguments", "format_table", "format_task", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="store directory")
    parser.add_argument("--ridge", type=float, default=0.0, help="ridge λ: minimise ‖Aμ−b‖² + λ‖μ‖² (default 0)")
    parser.add_argument("--split", help="fit on this split only (e.g. train; needs `omni-data split` first)")
    parser.add_argument(
        "--json", action="store_true", help="print the stored fits as JSON (for machines) instead of the tables"
    )
    add_cluster_arguments(parser)


def _num(v: float | None, fmt: str = ".4g") -> str:
    return "-" if v is None else format(v, fmt)


def format_task(f: TaskReferences) -> str:
    """One task: a summary line, then element, μ (eV), structures containing it and a flag."""
    from omni_data.harmonize.references import element_rows

    head = (
        f"task {f.task}: {f.n_frames} structures with energy"
        + (f" ({f.n_no_energy} without)" if f.n_no_energy else "")
        + f", energy std per atom {_num(f.e_per_atom_std_before)} -> "
        f"{_num(f.e_per_atom_std_after)} eV/atom after references"
        f", force RMS {_num(f.force_rms)} eV/Å"
    )
    rows = [r for r in element_rows(f) if r.mu is not None]
    absent = [r.symbol for r in element_rows(f) if r.mu is None]
    lines = [head]
    if rows:
        lines.append(f"  {'element':<8} {'Z':>3} {'μ (eV)':>14} {'structures':>11}  flag")
    else:
        lines.append("  (no structures with energy: nothing fitted)")
    notes: list[str] = []
    for r in rows:
        mark = "" if r.trusted else r.status.upper()
        lines.append(f"  {r.symbol:<8} {r.z:>3} {r.mu:>14.6f} {_num(r.structures, 'd'):>11}  {mark}".rstrip())
        if r.flag and r.flag not in notes:
            notes.append(r.flag)
    if absent:
        lines.append(f"  absent from this task (no reference; μ = 0 is used): {', '.join(absent)}")
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


def format_table(fits: Mapping[str, TaskReferences]) -> str:
    """Every task's per-element table, one block per task."""
    return "\n\n".join(format_task(f) for f in fits.values())


def run(args: argparse.Namespace) -> int:
    from omni_data.harmonize.references import fit_store, write_references
    from omni_data.store import Store

    if not args.ridge >= 0:  # before the fit, not after it (NaN too)
        raise ValueError(f"ridge must be >= 0, got {args.ridge}")
    store = Store(args.store)
    with dask_client(config_from_args(args)) as client:
        fits = fit_store(str(store.path), ridge=args.ridge, client=client, split=args.split)
    write_references(store, fits)
    if args.json:
        print(json.dumps({t: f.to_json() for t, f in fits.items()}, indent=1, sort_keys=True))
        return 0
    print(format_table(fits))
    scope = f" (fitted on split {args.split!r})" if args.split else ""
    print(f"\nreferences of {len(fits)} task(s){scope} written to {store.path}/catalog.json [references]")
    return 0
