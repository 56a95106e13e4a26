"""Molecular DFT single points with PySCF (e.g. PBE/def2-SVP) with analytic gradients.

Restricted Kohn-Sham for singlets, unrestricted otherwise. Periodic structures are refused: this
runner is for molecules (PySCF's PBC code needs other settings entirely). SCF non-convergence is
a failure, never a result.
"""

from __future__ import annotations

import numpy as np

from omni_data.recompute.molecules import Refused, is_molecule
from omni_data.recompute.protocols import Method
from omni_data.recompute.runners.result import RunFailed, RunResult, resolve_charge_spin
from omni_data.schema import Record
from omni_data.units import BOHR_ANGSTROM, HARTREE_EV

__all__ = ["versions", "run"]

OPTIONS = {"xc", "basis", "conv_tol", "max_cycle", "grid_level"}


def versions() -> dict[str, str]:
    import pyscf

    return {"pyscf": pyscf.__version__, "numpy": np.__version__}


def run(record: Record, method: Method) -> RunResult:
    """One PySCF KS-DFT energy + gradient for a molecule."""
    from pyscf import dft, gto

    if not is_molecule(record):
        raise Refused("refused:PySCF runner computes molecules only; this structure is periodic")
    unknown = set(method.options) - OPTIONS
    if unknown:
        raise Refused(f"bad_value:unknown pyscf option(s) {', '.join(sorted(unknown))}")
    opts = method.options
    chosen = resolve_charge_spin(record)
    charge, mult = chosen.charge, chosen.multiplicity
    atoms = [(int(z), tuple(float(x) for x in p)) for z, p in zip(record.numbers, record.positions)]
    try:
        mol = gto.M(
            atom=atoms,
            basis=str(opts.get("basis", "def2-svp")),
            charge=int(round(charge)),
            spin=mult - 1,
            unit="Angstrom",
            verbose=0,
        )
    except RuntimeError as exc:  # e.g. spin/electron-count mismatch
        raise Refused(f"bad_value:pyscf cannot build the molecule: {exc}") from None
    mf = dft.RKS(mol) if mult == 1 else dft.UKS(mol)
    mf.xc = str(opts.get("xc", "pbe"))
    mf.conv_tol = float(opts.get("conv_tol", 1e-9))
    mf.max_cycle = int(opts.get("max_cycle", 100))
    mf.grids.level = int(opts.get("grid_level", 3))
    cycles = {"n": 0}

    def count(envs: dict) -> None:
        cycles["n"] = int(envs.get("cycle", cycles["n"])) + 1

    mf.callback = count
    energy = float(mf.kernel())
    if not mf.converged:
        raise RunFailed(f"unconverged:pyscf SCF not converged in {mf.max_cycle} cycles (conv_tol {mf.conv_tol})")
    gradient = np.asarray(mf.nuc_grad_method().kernel())
    forces = -gradient * HARTREE_EV / BOHR_ANGSTROM
    return RunResult(
        energy=energy * HARTREE_EV,
        forces=forces,
        stress=None,
        converged=True,
        charge=charge,
        multiplicity=mult,
        n_scf=cycles["n"],
        info={"xc": mf.xc, "basis": mol.basis, "n_basis": int(mol.nao_nr()), "restricted": mult == 1},
        spin_source=chosen.source,
        warnings=list(chosen.warnings),
    )
