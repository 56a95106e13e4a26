"""Default sanity bounds checked at every ingest: values no real calculation gives.

A record outside them is quarantined with a reason of kind ``implausible`` (never dropped
silently, never stored); the usual cause is a unit the source did not state (stress in GPa or
kBar read as eV/Å³, energies in kcal/mol or meV read as eV). The bounds are deliberately wide,
so that real high-energy data (rattled OMat24 frames, compressed cells) pass:

* stress: every Voigt component ``|σ| <= 1 eV/Å³`` (160 GPa, twice OMat24's 80 GPa filter and
  above any DFT training set's pressure range); ``--stress-unit`` or the manifest's
  ``units.stress`` declares what the source holds.
* forces: every atom ``|F| <= 1000 eV/Å`` (twenty times OMat24's 50 eV/Å filter).
* energy, by ``energy_kind``:
  ``total``/``free``/``corrected``: ``E/atom <= +100 eV`` and ``E >= -sum_i Z_i^(7/3) Ha``. The
  lower bound follows the all-electron atomic energy, which grows as ``Z^(7/3)`` (Thomas-Fermi:
  ``-0.7687 Z^(7/3) Ha``; the real values are smaller in magnitude: C -37.8 Ha against 65 Ha
  here, U about -28,000 Ha relativistic against 38,000 Ha here). So an all-electron ORCA/Psi4
  total of a molecule with iodine or uranium passes, and so do VASP (PAW) totals, which are a few
  eV per atom; a kcal/mol or meV total read as eV falls far below it.
  ``referenced``: ``|E/atom| <= 100 eV`` (a formation or adsorption energy is a few eV).
* a 3x3 stress that is not symmetric: symmetrised (``(σ + σᵀ)/2``) when ``max |σij - σji| / 2``
  is at most ``1e-3 eV/Å³`` (0.16 GPa, about DFT's stress precision), counted per ingest;
  quarantined beyond that. Readers that see a 3x3 stress call ``schema.symmetric_voigt`` and
  note the asymmetry (in eV/Å³) in ``metadata[schema.STRESS_ASYMMETRY_KEY]``.

A manifest filter that allows more (``filters.max_stress``, ``max_force``) widens the matching
bound for that dataset (``SanityBounds.widened``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from omni_data.schema import STRESS_ASYMMETRY_KEY as ASYMMETRY_KEY
from omni_data.schema import Record, symmetric_voigt

__all__ = [
    "ASYMMETRY_KEY",
    "KIND",
    "SanityBounds",
    "energy_floor",
    "sanity_problem",
    "symmetric_voigt",
    "was_symmetrised",
]

HARTREE_EV = 27.211386245988
GPA_PER_EVA3 = 160.21766208

KIND = "implausible"
"""The quarantine reason kind of a value outside the bounds."""


@dataclass(frozen=True)
class SanityBounds:
    """The bounds one ingest checks (see the module doc for why these values)."""

    max_stress: float = 1.0  # eV/Å³, per Voigt component
    max_force: float = 1000.0  # eV/Å, per atom
    max_energy_per_atom: float = 100.0  # eV/atom: upper bound (totals), |E/atom| (referenced)
    stress_asymmetry_tol: float = 1e-3  # eV/Å³

    def widened(self, filters: Any) -> SanityBounds:
        """These bounds, loosened where a manifest ``Filters`` allows larger values."""
        if filters is None:
            return self
        out = self
        max_stress = getattr(filters, "max_stress", None)
        if max_stress is not None and max_stress > out.max_stress:
            out = replace(out, max_stress=float(max_stress))
        max_force = getattr(filters, "max_force", None)
        if max_force is not None and max_force > out.max_force:
            out = replace(out, max_force=float(max_force))
        epa = getattr(filters, "energy_per_atom", None)
        if epa is not None and max(abs(float(v)) for v in epa) > out.max_energy_per_atom:
            out = replace(out, max_energy_per_atom=max(abs(float(v)) for v in epa))
        return out


_Z_POWER = np.arange(119, dtype=np.float64) ** (7.0 / 3.0)


def energy_floor(numbers: np.ndarray) -> float:
    """The lowest total energy (eV) accepted for these atoms: ``-sum Z^(7/3)`` hartree."""
    return -HARTREE_EV * float(_Z_POWER[np.asarray(numbers, dtype=np.int64)].sum())


def _stress_problem(record: Record, bounds: SanityBounds) -> str | None:
    asym = record.metadata.get(ASYMMETRY_KEY) if record.metadata else None
    if asym is not None and float(asym) > bounds.stress_asymmetry_tol:
        return (
            f"{KIND}:stress not symmetric: max |σij-σji|/2 = {float(asym):.4g} eV/Å³ "
            f"> {bounds.stress_asymmetry_tol:g} (a non-symmetric stress is not a stress tensor)"
        )
    values = [abs(v) for v in np.asarray(record.stress, dtype=np.float64).reshape(-1).tolist()]
    big = max(values)
    if big > bounds.max_stress:
        k = values.index(big)
        return (
            f"{KIND}:stress |σ|={big:.4g} eV/Å³ ({big * GPA_PER_EVA3:.4g} GPa, component {k}) "
            f"> {bounds.max_stress:g} eV/Å³ ({bounds.max_stress * GPA_PER_EVA3:.0f} GPa); if the source "
            f"is in GPa or kBar, declare it (--stress-unit, or the manifest's units.stress)"
        )
    return None


def _force_problem(record: Record, bounds: SanityBounds) -> str | None:
    f = np.asarray(record.forces, dtype=np.float64).reshape(-1, 3)
    if f.size == 0 or float(np.abs(f).max()) * 1.7320508075688772 <= bounds.max_force:
        return None  # no component large enough for any |F| to pass the bound
    norms = np.sqrt(np.einsum("ij,ij->i", f, f))
    i = int(np.argmax(norms))
    if norms[i] > bounds.max_force:
        return (
            f"{KIND}:forces |F|={norms[i]:.4g} eV/Å on atom {i} > {bounds.max_force:g} eV/Å; "
            f"check the source's force/energy unit"
        )
    return None


def _energy_problem(record: Record, bounds: SanityBounds) -> str | None:
    energy, n = float(record.energy), record.n_atoms  # type: ignore[arg-type]
    epa = energy / n
    limit = bounds.max_energy_per_atom
    if record.energy_kind == "referenced":
        if abs(epa) > limit:
            return (
                f"{KIND}:energy {epa:.6g} eV/atom, a referenced energy beyond ±{limit:g} eV/atom; "
                f"check the source's energy unit and energy kind"
            )
        return None
    if epa > limit:
        return (
            f"{KIND}:energy {epa:.6g} eV/atom > +{limit:g} eV/atom for a {record.energy_kind} energy; "
            f"check the source's energy unit"
        )
    if epa >= -HARTREE_EV:  # every atom's floor is at least 1 Ha (Z >= 1): no sum needed
        return None
    floor = energy_floor(record.numbers)
    if energy < floor:
        return (
            f"{KIND}:energy {energy:.8g} eV is below {floor:.8g} eV, lower than any all-electron total "
            f"of these atoms (-sum Z^(7/3) Ha); an energy in kcal/mol, kJ/mol or meV read as eV? "
            f"declare the unit (--energy-unit, or the manifest's units.energy)"
        )
    return None


def sanity_problem(record: Record, bounds: SanityBounds) -> str | None:
    """The first bound ``record`` breaks (``"implausible:..."``), or None. Order: stress
    (asymmetry, then size), forces, energy. A label that is absent is not checked."""
    if record.stress is not None and (why := _stress_problem(record, bounds)) is not None:
        return why
    if record.forces is not None and (why := _force_problem(record, bounds)) is not None:
        return why
    if record.energy is not None and record.n_atoms > 0:
        return _energy_problem(record, bounds)
    return None


def was_symmetrised(record: Record) -> bool:
    """Whether the stored stress is the symmetric part of a non-symmetric source stress."""
    asym = record.metadata.get(ASYMMETRY_KEY) if record.metadata else None
    return asym is not None and float(asym) > 0.0
