"""Unit constants and conversions into Omni's units (eV, Å, eV/Å, eV/Å³).

Constants are CODATA 2014 as used by ASE (``ase.units``), so numbers agree with ASE readers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["energy_factor", "length_factor", "stress_factor", "vasp_kbar_to_ase"]

HARTREE_EV = 27.211386024367243
BOHR_ANGSTROM = 0.5291772105638411
KCAL_MOL_EV = 0.04336410390059322  # 1 kcal/mol in eV
KJ_MOL_EV = 0.010364269574711572  # 1 kJ/mol in eV
RY_EV = HARTREE_EV / 2
GPA_EVA3 = 0.006241509125883258  # 1 GPa in eV/Å^3 (ase.units.GPa)
KBAR_EVA3 = 0.1 * GPA_EVA3

ENERGY_UNITS: dict[str, float] = {
    "eV": 1.0,
    "meV": 1e-3,
    "hartree": HARTREE_EV,
    "Ha": HARTREE_EV,
    "Ry": RY_EV,
    "kcal/mol": KCAL_MOL_EV,
    "kJ/mol": KJ_MOL_EV,
}
LENGTH_UNITS: dict[str, float] = {"Å": 1.0, "angstrom": 1.0, "A": 1.0, "bohr": BOHR_ANGSTROM, "nm": 10.0}
STRESS_UNITS: dict[str, float] = {"eV/Å^3": 1.0, "eV/A^3": 1.0, "GPa": GPA_EVA3, "kbar": KBAR_EVA3, "kBar": KBAR_EVA3}


def energy_factor(unit: str) -> float:
    """Multiplier taking an energy in ``unit`` to eV."""
    try:
        return ENERGY_UNITS[unit]
    except KeyError:
        raise ValueError(f"unknown energy unit {unit!r}; known: {sorted(ENERGY_UNITS)}") from None


def length_factor(unit: str) -> float:
    """Multiplier taking a length in ``unit`` to Å."""
    try:
        return LENGTH_UNITS[unit]
    except KeyError:
        raise ValueError(f"unknown length unit {unit!r}; known: {sorted(LENGTH_UNITS)}") from None


def stress_factor(unit: str) -> float:
    """Multiplier taking a stress in ``unit`` to eV/Å³ (sign is separate: see ``stress_sign``)."""
    try:
        return STRESS_UNITS[unit]
    except KeyError:
        raise ValueError(f"unknown stress unit {unit!r}; known: {sorted(STRESS_UNITS)}") from None


def vasp_kbar_to_ase(stress_kbar: np.ndarray) -> np.ndarray:
    """VASP/MPtrj stress (kBar, compression positive) to ASE (eV/Å³, compression negative)."""
    return -KBAR_EVA3 * np.asarray(stress_kbar, dtype=np.float64)
