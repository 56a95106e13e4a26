"""GFN1/GFN2-xTB single points with tblite (periodic and molecular).

Uses ``tblite.interface.Calculator`` directly with explicit unit conversions (atomic units in,
Omni units out), so the numbers do not depend on a calculator wrapper. Stress follows tblite's
ASE calculator: ``virial * Hartree / volume`` in Voigt order (ASE sign).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omni_data.recompute.molecules import Refused
from omni_data.recompute.protocols import Method
from omni_data.recompute.runners.result import RunFailed, RunResult, resolve_charge_spin
from omni_data.schema import Record
from omni_data.units import BOHR_ANGSTROM, HARTREE_EV

__all__ = ["versions", "run"]

KB_HARTREE = 3.166811563455546e-06  # Boltzmann constant in Hartree/K (ase.units.kB / Hartree)
METHODS = ("GFN2-xTB", "GFN1-xTB", "IPEA1-xTB")
OPTIONS = {"accuracy", "max_iterations", "electronic_temperature"}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"tblite": version("tblite"), "numpy": np.__version__}


def run(record: Record, method: Method) -> RunResult:
    """One tblite single point; ``Refused`` for unknown methods/options, RuntimeError on SCF failure."""
    from tblite.interface import Calculator

    if method.name not in METHODS:
        raise Refused(f"bad_value:tblite method {method.name!r}, known: {', '.join(METHODS)}")
    unknown = set(method.options) - OPTIONS
    if unknown:
        raise Refused(f"bad_value:unknown tblite option(s) {', '.join(sorted(unknown))}")
    chosen = resolve_charge_spin(record)
    charge, mult = chosen.charge, chosen.multiplicity
    pbc = np.asarray(record.pbc, dtype=bool)
    periodic = bool(pbc.any())
    kwargs: dict[str, Any] = {"charge": charge, "uhf": mult - 1}
    if periodic:
        kwargs["lattice"] = np.asarray(record.cell, dtype=float) / BOHR_ANGSTROM
        kwargs["periodic"] = pbc
    calc = Calculator(
        method.name, np.asarray(record.numbers), np.asarray(record.positions, dtype=float) / BOHR_ANGSTROM, **kwargs
    )
    calc.set("verbosity", 0)
    opts = method.options
    calc.set("accuracy", float(opts.get("accuracy", 1.0)))
    calc.set("max-iter", int(opts.get("max_iterations", 250)))
    calc.set("temperature", float(opts.get("electronic_temperature", 300.0)) * KB_HARTREE)
    try:
        res = calc.singlepoint()
    except RuntimeError as exc:  # tblite reports SCF non-convergence as a runtime error
        text = str(exc).replace("\n", " ")
        kind = "unconverged" if "converge" in text.lower() else "run"
        raise RunFailed(f"{kind}:tblite {method.name}: {text}") from None
    energy = float(res.get("energy")) * HARTREE_EV
    forces = -np.asarray(res.get("gradient")) * HARTREE_EV / BOHR_ANGSTROM
    stress = None
    if periodic and pbc.all():
        volume = abs(float(np.linalg.det(np.asarray(record.cell, dtype=float))))
        virial = np.asarray(res.get("virial")) * HARTREE_EV / volume
        stress = virial.flat[[0, 4, 8, 5, 2, 1]].astype(float)
    return RunResult(
        energy=energy,
        forces=forces,
        stress=stress,
        converged=True,
        charge=charge,
        multiplicity=mult,
        info={"periodic": periodic, "method": method.name},
        spin_source=chosen.source,
        warnings=list(chosen.warnings),
    )
