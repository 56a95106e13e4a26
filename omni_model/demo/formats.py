"""Writers for the demo's three native formats: ASE sqlite db, extended XYZ, SPICE HDF5.

Each writer is atomic (temp file in the same folder, then ``os.replace``) so a killed demo never
leaves a half-written "database" that a re-run would ingest.

SPICE layout (as in the SPICE 1.x release files and ``modelforge_SPICE-1.1.4_n2.hdf5``): one group
per molecule holding ``atomic_numbers`` (int16, n), ``conformations`` (float32, m x n x 3, attr
units="bohr"), ``dft_total_energy`` (float64, m, attr units="hartree"), ``dft_total_gradient``
(float32, m x n x 3, attr units="hartree/bohr", a gradient: forces are its negative), ``smiles`` and
``subset`` (object arrays of one bytes string each).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from omni_data import units

__all__ = ["write_asedb", "write_extxyz", "SpiceMolecule", "write_spice_hdf5"]


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_asedb(path: Path, rows: Sequence[tuple[Atoms, dict]]) -> Path:
    """Write ``(atoms with calculator results, key_value_pairs)`` rows to a new sqlite ASE db."""
    import ase.db

    path = Path(path)
    tmp = _tmp(path)
    tmp.unlink(missing_ok=True)
    with ase.db.connect(str(tmp), type="db", append=False) as db:
        for atoms, kvp in rows:
            db.write(atoms, key_value_pairs=kvp)
    os.replace(tmp, path)
    return path


def write_extxyz(path: Path, frames: Sequence[Atoms]) -> Path:
    """Write frames (with SinglePointCalculator results and ``info``) as extended XYZ."""
    import ase.io

    path = Path(path)
    tmp = _tmp(path)
    ase.io.write(str(tmp), list(frames), format="extxyz")
    os.replace(tmp, path)
    return path


@dataclass
class SpiceMolecule:
    """The conformers of one molecule, in eV and Å (converted to SPICE's atomic units on write)."""

    name: str
    smiles: str
    numbers: np.ndarray
    positions: list[np.ndarray] = field(default_factory=list)  # each (n, 3) Å
    energies: list[float] = field(default_factory=list)  # eV
    forces: list[np.ndarray] = field(default_factory=list)  # each (n, 3) eV/Å


def write_spice_hdf5(path: Path, molecules: Sequence[SpiceMolecule], subset: str) -> Path:
    """Write molecules in SPICE's HDF5 layout: bohr, hartree and hartree/bohr *gradients*."""
    import h5py

    path = Path(path)
    tmp = _tmp(path)
    with h5py.File(tmp, "w") as fh:
        for mol in molecules:
            if not mol.positions:
                raise ValueError(f"{path}: molecule {mol.name!r} has no conformers")
            group = fh.create_group(mol.name)
            group.create_dataset("atomic_numbers", data=np.asarray(mol.numbers, dtype=np.int16))
            conf = np.stack(mol.positions) / units.BOHR_ANGSTROM
            group.create_dataset("conformations", data=conf.astype(np.float32)).attrs["units"] = "bohr"
            energy = np.asarray(mol.energies, dtype=np.float64) / units.HARTREE_EV
            group.create_dataset("dft_total_energy", data=energy).attrs["units"] = "hartree"
            gradient = -np.stack(mol.forces) * units.BOHR_ANGSTROM / units.HARTREE_EV
            ds = group.create_dataset("dft_total_gradient", data=gradient.astype(np.float32))
            ds.attrs["units"] = "hartree/bohr"
            text = h5py.special_dtype(vlen=bytes)
            group.create_dataset("smiles", data=np.array([mol.smiles.encode()], dtype=object), dtype=text)
            group.create_dataset("subset", data=np.array([subset.encode()], dtype=object), dtype=text)
    os.replace(tmp, path)
    return path
