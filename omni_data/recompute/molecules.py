"""How a non-periodic molecule goes into a periodic plane-wave code (VASP).

Choice (documented in docs/recompute.md): the molecule is centred in a box with ``vacuum`` Å on
every side of its bounding box (cubic by default, so no direction is favoured), computed at Γ only
with Gaussian smearing; the spin multiplicity fixes the moment (ISPIN 1 for singlets, else ISPIN 2
with NUPDOWN = 2S). Charged molecules are refused by default: in a periodic box a net charge needs
a compensating background and a monopole/dipole correction, and NELECT needs the POTCAR valences.
With ``charged: nelect`` and POTCARs available, NELECT comes from pymatgen (structure charge) and
LDIPOL/IDIPOL=4 with DIPOL at the box centre switch on VASP's corrections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omni_data.recompute.protocols import MoleculePolicy
from omni_data.schema import Record

__all__ = ["Refused", "BoxedMolecule", "is_molecule", "box_molecule", "spin_incar"]


class Refused(ValueError):
    """A structure this protocol will not compute; ``reason`` is ``"<kind>:<detail>"``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class BoxedMolecule:
    """A molecule placed in a periodic box, with the INCAR tags its charge and spin imply."""

    positions: np.ndarray  # (n, 3) Å, centred in the box
    cell: np.ndarray  # (3, 3) Å, diagonal
    incar: dict[str, Any] = field(default_factory=dict)
    charge: float = 0.0


def is_molecule(record: Record) -> bool:
    """True when the record has no periodic direction (and so no meaningful cell)."""
    return not bool(np.asarray(record.pbc).any())


def box_molecule(record: Record, policy: MoleculePolicy, potcars_available: bool) -> BoxedMolecule:
    """Centre ``record`` in a vacuum box per ``policy``; ``Refused`` when the policy says no."""
    if policy.policy == "refuse":
        raise Refused("refused:protocol does not compute non-periodic molecules")
    charge = float(record.charge or 0.0)
    if abs(charge) > 1e-8:
        if policy.charged == "refuse":
            raise Refused(
                f"refused:charged molecule (charge {charge:+g}) needs NELECT and dipole corrections; protocol says charged: refuse"
            )
        if not potcars_available:
            raise Refused(
                f"refused:charged molecule (charge {charge:+g}) needs POTCAR valences for NELECT; set PMG_VASP_PSP_DIR"
            )
    pos = np.asarray(record.positions, dtype=np.float64).reshape(-1, 3)
    extent = pos.max(axis=0) - pos.min(axis=0)
    lengths = extent + 2.0 * policy.vacuum
    if policy.cubic:
        lengths = np.full(3, lengths.max())
    cell = np.diag(lengths)
    centred = pos - (pos.max(axis=0) + pos.min(axis=0)) / 2.0 + lengths / 2.0
    incar = dict(policy.incar)
    incar.update(spin_incar(record))
    if abs(charge) > 1e-8:
        incar.update({"LDIPOL": True, "IDIPOL": 4, "DIPOL": [0.5, 0.5, 0.5]})
    return BoxedMolecule(positions=centred, cell=cell, incar=incar, charge=charge)


def spin_incar(record: Record) -> dict[str, Any]:
    """ISPIN/NUPDOWN from the multiplicity: singlet -> ISPIN 1; 2S+1 > 1 -> ISPIN 2, NUPDOWN 2S.

    An unknown multiplicity keeps the input set's spin-polarised default (no NUPDOWN)."""
    if record.spin is None:
        return {}
    mult = int(record.spin)
    n_electrons = int(np.asarray(record.numbers).sum()) - int(round(record.charge or 0.0))
    if (n_electrons + mult - 1) % 2 != 0:
        raise Refused(f"bad_value:multiplicity {mult} impossible with {n_electrons} electrons")
    if mult == 1:
        return {"ISPIN": 1}  # pymatgen drops MAGMOM when ISPIN is 1
    return {"ISPIN": 2, "NUPDOWN": mult - 1}
