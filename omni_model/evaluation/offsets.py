"""Per-element energy offsets: what is left of an energy error once the energy zeros are aligned.

A head evaluated on another domain's labels is off by the difference of the two energy zeros,
which is (close to) a sum of per-element constants. ``fit_offsets`` finds those constants by least
squares on a *calibration* set of structures, minimising the per-atom residual

    Σ_s ((r_s − Σ_Z n_sZ μ_Z) / N_s)²,    r_s = E_pred,s − E_ref,s  (eV, total),

and ``remove_offsets`` subtracts Σ_Z n_sZ μ_Z from the residuals of a *different* (test) set.
The error that remains is the part a constant per element cannot explain: transfer, not reference.
Pure numpy; no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["OffsetFit", "composition", "fit_offsets", "remove_offsets", "mae_rmse"]


@dataclass(frozen=True)
class OffsetFit:
    """Fitted offsets μ_Z (eV per atom of element Z) and what they were fitted on."""

    offsets: dict[int, float]
    n_structures: int
    rank: int  # rank of the per-atom composition matrix (< len(offsets) when compositions are collinear)

    def uncalibrated(self, numbers: Iterable[int]) -> list[int]:
        """Elements among ``numbers`` that the calibration set never contained (offset taken as 0)."""
        return sorted({int(z) for z in numbers} - set(self.offsets))


def composition(numbers: Sequence[np.ndarray], elements: Sequence[int]) -> np.ndarray:
    """(n_structures, n_elements) atom counts; an element not in ``elements`` raises ValueError."""
    col = {int(z): i for i, z in enumerate(elements)}
    out = np.zeros((len(numbers), len(elements)))
    for s, zs in enumerate(numbers):
        for z, c in zip(*np.unique(np.asarray(zs, dtype=np.int64), return_counts=True)):
            if int(z) not in col:
                raise ValueError(f"structure {s}: element Z={int(z)} is not among {list(elements)}")
            out[s, col[int(z)]] = c
    return out


def fit_offsets(residual: np.ndarray, counts: np.ndarray, elements: Sequence[int]) -> OffsetFit:
    """Least-squares μ_Z from total-energy residuals ``residual`` (n,) and ``counts`` (n, n_el).

    Only elements present in the calibration structures get an offset; for collinear compositions
    the minimum-norm solution is taken (its predictions on compositions in the span are unique).
    Structures with a non-finite residual (no energy label) are ignored.
    """
    residual = np.asarray(residual, dtype=float)
    counts = np.asarray(counts, dtype=float)
    ok = np.isfinite(residual)
    residual, counts = residual[ok], counts[ok]
    if len(residual) == 0:
        return OffsetFit({}, 0, 0)
    present = np.flatnonzero(counts.sum(axis=0) > 0)
    n_atoms = counts.sum(axis=1)
    a = counts[:, present] / n_atoms[:, None]
    mu, _, rank, _ = np.linalg.lstsq(a, residual / n_atoms, rcond=None)
    return OffsetFit({int(elements[j]): float(m) for j, m in zip(present, mu)}, len(residual), int(rank))


def remove_offsets(residual: np.ndarray, counts: np.ndarray, elements: Sequence[int], fit: OffsetFit) -> np.ndarray:
    """Total-energy residuals minus Σ_Z n_Z μ_Z (elements without an offset contribute 0)."""
    mu = np.array([fit.offsets.get(int(z), 0.0) for z in elements])
    return np.asarray(residual, dtype=float) - np.asarray(counts, dtype=float) @ mu


def mae_rmse(values: np.ndarray) -> tuple[float, float]:
    """(mean |x|, sqrt(mean x²)) over the finite values; NaN for none."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    return float(np.mean(np.abs(x))), float(np.sqrt(np.mean(x * x)))
