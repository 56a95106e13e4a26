"""What a local runner returns, and how it is written into the job dir (results.json + npz)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


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


def default_multiplicity(numbers: np.ndarray, charge: float) -> int:
    """Lowest multiplicity allowed by electron parity: 1 for even, 2 for odd electron counts."""
    n_electrons = int(np.asarray(numbers).sum()) - int(round(charge))
    return 1 if n_electrons % 2 == 0 else 2


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to a temp name, then ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
