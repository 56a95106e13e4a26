"""Record -> ``ase.Atoms`` with a SinglePointCalculator holding the labels (ASE conventions).

Stress is already ASE Voigt with ASE sign in the store, so it is passed through unchanged.
``energy_kind == "free"`` also sets ``free_energy`` so ``get_potential_energy(force_consistent=True)``
works as for a VASP-read structure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from omni_data.schema import Record

if TYPE_CHECKING:
    from ase import Atoms

__all__ = ["record_to_atoms"]


def record_to_atoms(record: Record) -> Atoms:
    """An ``Atoms`` for ``record``: labels on a SinglePointCalculator, bookkeeping in ``info``."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixAtoms

    atoms = Atoms(
        numbers=np.asarray(record.numbers),
        positions=np.asarray(record.positions),
        cell=np.zeros((3, 3)) if record.cell is None else np.asarray(record.cell),
        pbc=np.asarray(record.pbc, dtype=bool),
    )
    if record.tags is not None:
        atoms.set_tags(np.asarray(record.tags))
    if record.fixed is not None and np.asarray(record.fixed).any():
        atoms.set_constraint(FixAtoms(mask=np.asarray(record.fixed, dtype=bool)))
    info = atoms.info
    info["omni_id"] = record.id
    info["dataset"] = record.dataset
    info["task"] = record.task
    info["energy_kind"] = record.energy_kind
    info["weight"] = float(record.weight)
    if record.charge is not None:
        info["charge"] = float(record.charge)
    if record.spin is not None:
        info["spin"] = int(record.spin)
    results: dict[str, object] = {}
    if record.energy is not None:
        results["energy"] = float(record.energy)
        if record.energy_kind == "free":
            results["free_energy"] = float(record.energy)
    if record.forces is not None:
        results["forces"] = np.asarray(record.forces)
    if record.stress is not None:
        results["stress"] = np.asarray(record.stress)
    if record.magmoms is not None:
        results["magmoms"] = np.asarray(record.magmoms)
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms
