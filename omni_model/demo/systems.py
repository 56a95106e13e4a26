"""Structures for the demo corpus: rattled metals, small ionic/covalent crystals, small molecules.

Each builder is deterministic given a ``numpy.random.Generator`` so a demo run can be repeated.
The three families are the three "databases" of the demo; their overlap in elements (C and O in
SiC/MgO and in the molecules, none with the metals) is small on purpose, as in the real corpus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc100, fcc111, molecule

__all__ = ["Structure", "metal_structure", "crystal_structure", "molecule_conformer"]

METALS: tuple[str, ...] = ("Cu", "Pd", "Ag", "Pt", "Au", "Ni", "Al")
"""fcc metals that ASE's EMT parametrises."""

CRYSTALS: dict[str, tuple[str, float]] = {
    "MgO": ("rocksalt", 5.020),
    "NaCl": ("rocksalt", 5.595),
    "LiF": ("rocksalt", 4.810),
    "LiCl": ("rocksalt", 5.287),
    "Si": ("diamond", 5.695),
    "SiC": ("zincblende", 4.526),
}
"""Formula -> (ASE crystal structure, lattice constant in Å) of 8-atom cubic cells. The lattice
constants are where GFN1-xTB at the Gamma point (the crystals' method) has zero pressure, found
by a secant search on the pressure from the experimental values (MgO 4.21, NaCl 5.64, LiF 4.03,
LiCl 5.13, Si 5.43, SiC 4.36 Å); the small Gamma-only cells make MgO and LiF swell by ~19%.
Rattling around the method's own minimum keeps stresses in a learnable range. (AlP and GaAs were
left out: their Gamma-point pressure is not monotonic in the lattice constant.)"""

MOLECULES: dict[str, str] = {
    "H2O": "O",
    "CH4": "C",
    "NH3": "N",
    "C2H6": "CC",
    "CH3OH": "CO",
    "C2H4": "C=C",
    "HCN": "C#N",
    "CO2": "O=C=O",
    "H2CO": "C=O",
    "CH3CHO": "CC=O",
    "C2H2": "C#C",
    "N2H4": "NN",
}
"""ASE ``molecule`` name -> SMILES (all neutral, closed shell), stored as SPICE stores ``smiles``."""


@dataclass
class Structure:
    """One generated structure before labelling: the atoms plus where it came from."""

    atoms: Atoms
    family: str  # metals | crystals | molecules
    label: str  # e.g. "Cu-bulk", "MgO", "CH3OH"
    group: str  # group key for splits: structures of one group are related (same prototype)


def metal_structure(rng: np.random.Generator, index: int) -> Structure:
    """A rattled, strained fcc bulk or (111)/(100) slab of one metal or a random binary alloy."""
    element = METALS[index % len(METALS)]
    kind = ("bulk", "slab111", "slab100", "alloy")[index % 4]
    a = bulk(element, "fcc").cell.lengths()[0] * np.sqrt(2.0)
    if kind in ("bulk", "alloy"):
        atoms = bulk(element, "fcc", a=a, cubic=True).repeat((2, 1, 1))
    elif kind == "slab111":
        atoms = fcc111(element, size=(2, 2, 3), a=a, vacuum=5.0, periodic=True)
    else:
        atoms = fcc100(element, size=(2, 2, 3), a=a, vacuum=5.0, periodic=True)
    label = f"{element}-{kind}"
    if kind == "alloy":
        other = METALS[int(rng.integers(len(METALS)))]
        swap = rng.random(len(atoms)) < 0.4
        symbols = np.array(atoms.get_chemical_symbols(), dtype=object)
        symbols[swap] = other
        atoms.set_chemical_symbols(list(symbols))
        label = f"{element}{other}-alloy"
    strain = np.eye(3) + rng.uniform(-0.03, 0.03, size=(3, 3)) * (1 if kind in ("bulk", "alloy") else 0)
    strain = 0.5 * (strain + strain.T)
    atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
    atoms.rattle(stdev=float(rng.uniform(0.03, 0.12)), seed=int(rng.integers(2**31)))
    return Structure(atoms, "metals", label, label)


def crystal_structure(rng: np.random.Generator, index: int) -> Structure:
    """A rattled and slightly strained 8-atom cubic cell."""
    names = list(CRYSTALS)
    name = names[index % len(names)]
    structure, a0 = CRYSTALS[name]
    atoms = bulk(name, structure, a=a0, cubic=True)
    strain = np.eye(3) + rng.uniform(-0.02, 0.02, size=(3, 3))
    strain = 0.5 * (strain + strain.T)
    atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
    atoms.rattle(stdev=float(rng.uniform(0.02, 0.08)), seed=int(rng.integers(2**31)))
    return Structure(atoms, "crystals", name, name)


def molecule_conformer(name: str, rng: np.random.Generator) -> Atoms:
    """A Gaussian-rattled copy of the ASE reference geometry of ``name`` (no cell, no pbc)."""
    atoms = molecule(name)
    atoms.set_cell(None)
    atoms.pbc = False
    atoms.positions += rng.normal(0.0, float(rng.uniform(0.03, 0.1)), size=atoms.positions.shape)
    return atoms
