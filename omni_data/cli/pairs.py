"""``omni-data pairs STORE [STORE...] [--ridge L]``: per-element shifts between two tasks."""

from __future__ import annotations

import argparse
import json

from omni_data.cli.argtypes import bounded

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stores", nargs="+", help="stores holding bridge records and their sources")
    parser.add_argument("--ridge", type=bounded(float, 0.0), default=0.0, help="ridge λ for the shift fit")
    parser.add_argument("--json", action="store_true", help="print the fits as JSON (for machines)")


def run(args: argparse.Namespace) -> int:
    from omni_data.harmonize.pairs import SECTION, fit_pairs
    from omni_data.store import Store

    stores = [Store(p) for p in args.stores]
    fits = fit_pairs(stores, ridge=args.ridge)
    if not fits:
        from omni_data.cli.errors import CommandFailed

        raise CommandFailed(f"{', '.join(args.stores)}: no bridge records (metadata source_id) with energies found")
    stores[0].catalog.update_section(SECTION, [f.to_json() for f in fits])
    if args.json:
        print(json.dumps([f.to_json() for f in fits], indent=1, sort_keys=True))
        return 0
    from ase.data import chemical_symbols

    print(f"{'source -> task':<28} {'pairs':>6} {'RMS/atom before':>16} {'after (eV/atom)':>16}")
    for f in fits:
        print(
            f"{f.source_task + ' -> ' + f.task:<28} {f.n_pairs:>6} {f.rms_per_atom_before:>16.4g} "
            f"{f.rms_per_atom_after:>16.4g}" + ("  underdetermined" if f.underdetermined else "")
        )
        shifts = ", ".join(f"{chemical_symbols[z]}={v:+.4f}" for z, v in sorted(f.delta.items()))
        print(f"    δ (eV/atom): {shifts}")
        if f.underdetermined:
            print(
                "    note: some elements always occur in the same proportions in these pairs, so only "
                "their combined shift is fitted; the single δ values are not to be read on their own"
            )
    print(f"written to {stores[0].path}/catalog.json [{SECTION}]")
    return 0
