"""``omni-data references STORE [--ridge L] [--workers N]``: fit and store elemental references."""
from __future__ import annotations

import argparse

from omni_data.pipeline.cluster import add_cluster_arguments, config_from_args, dask_client


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="store directory")
    parser.add_argument("--ridge", type=float, default=0.0,
                        help="ridge λ: minimise ‖Aμ−b‖² + λ‖μ‖² (default 0)")
    parser.add_argument("--split", help="fit on this split only (e.g. train; needs `omni-data split` first)")
    add_cluster_arguments(parser)


def format_table(fits: dict) -> str:
    """One line per task: frames, elements, per-atom energy std before → after, force RMS."""
    lines = [f"{'task':<16} {'frames':>8} {'elements':>8} {'std/atom before':>16} "
             f"{'after (eV/atom)':>16} {'force RMS':>10}  notes"]
    for task, f in fits.items():
        def num(v: float | None, fmt: str = ".4g") -> str:
            return "-" if v is None else format(v, fmt)
        notes = []
        if f.absent:
            notes.append(f"absent Z={','.join(map(str, f.absent))} (μ=0)")
        if f.underdetermined:
            notes.append(f"underdetermined (rank {f.rank} < {len(f.mu)})")
        if f.n_no_energy:
            notes.append(f"{f.n_no_energy} without energy")
        lines.append(f"{task:<16} {f.n_frames:>8} {len(f.mu):>8} {num(f.e_per_atom_std_before):>16} "
                     f"{num(f.e_per_atom_std_after):>16} {num(f.force_rms):>10}  {'; '.join(notes)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from omni_data.harmonize.references import fit_store, write_references
    from omni_data.store import Store

    store = Store(args.store)
    with dask_client(config_from_args(args)) as client:
        fits = fit_store(str(store.path), ridge=args.ridge, client=client, split=args.split)
    write_references(store, fits)
    print(format_table(fits))
    scope = f" (fitted on split {args.split!r})" if args.split else ""
    print(f"references of {len(fits)} task(s){scope} written to {store.path}/catalog.json [references]")
    return 0
