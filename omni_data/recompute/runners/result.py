"""What a local runner returns, and how it is written into the job dir (results.json + npz)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunFailed", "RunResult", "default_multiplicity", "ChargeSpin", "resolve_charge_spin", "write_arrays"]


class RunFailed(RuntimeError):
    """An engine failure; ``reason`` is already ``"<kind>:<detail>"`` (e.g. ``unconverged:...``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class RunResult:
    """Energy (eV), forces (eV/Å), stress (eV/Å³, ASE Voigt) and how the run went."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    converged: bool
    charge: float
    multiplicity: int
    n_scf: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    spin_source: str = ""  # record / magmoms / electron_count (see resolve_charge_spin)
    warnings: list[str] = field(default_factory=list)


def default_multiplicity(numbers: np.ndarray, charge: float) -> int:
    """Lowest multiplicity allowed by electron parity: 1 for even, 2 for odd electron counts."""
    n_electrons = int(np.asarray(numbers).sum()) - int(round(charge))
    return 1 if n_electrons % 2 == 0 else 2


@dataclass(frozen=True)
class ChargeSpin:
    """The charge (e) and spin multiplicity 2S+1 a runner uses, where they came from, and warnings."""

    charge: float
    multiplicity: int
    source: str
    warnings: tuple[str, ...] = ()


def _allowed(n_electrons: int, mult: int) -> bool:
    return mult >= 1 and (n_electrons + mult - 1) % 2 == 0


def resolve_charge_spin(record: Any) -> ChargeSpin:
    """Charge and multiplicity for a local run, in this order of trust:

    1. ``record.spin`` (the multiplicity the source dataset states), checked against the electrons;
    2. the magnetic moments: multiplicity = round(|sum of magmoms|) + 1 (the allowed value nearest
       to it when the electron count has the other parity, with a warning);
    3. the lowest multiplicity the electron count allows, with a warning: the structure may be a
       triplet computed as a singlet, and the job record says so.

    A missing charge is taken as 0 with a warning. ``Refused`` when the record's own spin is
    impossible for its electron count."""
    from omni_data.recompute.molecules import Refused

    warns: list[str] = []
    if record.charge is None:
        charge = 0.0
        warns.append("charge: record has no charge; computed as neutral (0)")
    else:
        charge = float(record.charge)
        if abs(charge - round(charge)) > 1e-8:
            raise Refused(f"bad_value:non-integer charge {charge} for a local recompute")
    n_el = int(np.asarray(record.numbers).sum()) - int(round(charge))
    if record.spin is not None:
        mult = int(round(float(record.spin)))
        if not _allowed(n_el, mult):
            raise Refused(f"bad_value:record multiplicity {mult} impossible with {n_el} electrons (charge {charge:+g})")
        return ChargeSpin(charge, mult, "record", tuple(warns))
    if record.magmoms is not None and len(np.asarray(record.magmoms)):
        total = abs(float(np.sum(np.asarray(record.magmoms, dtype=float))))
        mult = int(round(total)) + 1
        if not _allowed(n_el, mult):
            mult = min((m for m in (mult - 1, mult + 1) if m >= 1), key=lambda m: (abs(m - 1 - total), m))
            warns.append(
                f"spin: magnetic moments sum to {total:.3f} muB, not allowed with {n_el} electrons; "
                f"multiplicity {mult} (nearest allowed) used"
            )
        return ChargeSpin(charge, mult, "magmoms", tuple(warns))
    mult = default_multiplicity(record.numbers, charge)
    warns.append(
        f"spin: record has no spin multiplicity nor magnetic moments; multiplicity {mult} (lowest allowed "
        f"by {n_el} electrons) assumed, so an open-shell ground state (e.g. a triplet) is not computed as one"
    )
    return ChargeSpin(charge, mult, "electron_count", tuple(warns))


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to a temp name, then ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
