"""Per-task elemental reference energies: the per-element table and the catalog section.

The fit itself (streamed least squares over a store's shards) is ``harmonize.reference_fit``;
its names are re-exported here, where they were defined before. This module turns a fit into
the per-element table the CLI prints and the report shows (``element_rows``, with a flag for
every μ that is not a fitted value of its own), stores the fits in the catalog section
``references`` and reads them back for the trainer.

Absent elements: an element that never occurs in a task has no reference there; it is listed
under ``absent`` (relative to the elements of the whole store) and the trainer uses **0.0** for
it (see :func:`reference_energy`). A reference is never borrowed from another task, because
tasks have different energy zeros (pseudopotential vs all-electron totals differ by keV/atom).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from omni_data.harmonize.reference_fit import (
    FITTED,
    ILL_CONDITIONED,
    N_Z,
    UNDETERMINED,
    RefAccumulator,
    TaskReferences,
    accumulate,
    accumulate_table,
    element_counts,
    element_status,
    fit_store,
    merge_all,
    shard_accumulators,
    solve,
    solve_all,
)

__all__ = [
    "N_Z",
    "SECTION",
    "ElementRow",
    "RefAccumulator",
    "TaskReferences",
    "accumulate",
    "accumulate_table",
    "element_counts",
    "element_rows",
    "element_status",
    "fit_store",
    "load_force_rms",
    "load_references",
    "merge_all",
    "read_references",
    "reference_energy",
    "shard_accumulators",
    "solve",
    "solve_all",
    "write_references",
]

SECTION = "references"


@dataclass(frozen=True)
class ElementRow:
    """One line of a task's per-element table, as the CLI prints it and the report shows it."""

    z: int
    symbol: str
    mu: float | None  # None: absent from the task (the trainer uses 0.0)
    structures: int | None  # structures with energy containing it (None: not stored)
    status: str  # fitted, undetermined, ill-conditioned or absent
    flag: str  # "" when fitted; otherwise why the μ is not to be read on its own

    @property
    def trusted(self) -> bool:
        """True when μ is a fitted value that means something on its own."""
        return self.status == FITTED


def _flag(status: str, z: int, fit: TaskReferences) -> str:
    """Why the μ of element ``z`` is not a fitted value of its own ("" when it is)."""
    from ase.data import chemical_symbols

    if status == FITTED:
        return ""
    if status == "absent":
        return "absent from this task: no reference, μ = 0 is used"
    partners = sorted({p for c in fit.collinear if z in c for p in c})
    names = ", ".join(chemical_symbols[p] for p in partners) or chemical_symbols[z]
    if status == UNDETERMINED:
        why = (
            f"underdetermined: {names} always occur in the same proportions (rank {fit.rank} "
            f"< {len(fit.mu)}), so only their combined energy is fitted, not each μ"
        )
    elif status == ILL_CONDITIONED:
        why = (
            f"ill-conditioned: {names} almost always occur in the same proportions, so each "
            "μ is poorly determined (only their combined energy is reliable)"
        )
    else:  # a section written before per-element status: the task-level flag only
        why = f"underdetermined fit (rank {fit.rank} < {len(fit.mu)}): μ is not determined on its own"
    return why + (f"; the value shown is set by ridge λ={fit.ridge:g}" if fit.ridge > 0 else "")


def element_rows(fit: TaskReferences) -> list[ElementRow]:
    """The per-element table of one task (present elements, then absent ones), flags included."""
    from ase.data import chemical_symbols

    rows = []
    for z, mu in sorted(fit.mu.items()):
        status = fit.element_status.get(z, "underdetermined-task" if fit.underdetermined else FITTED)
        shown = UNDETERMINED if status == "underdetermined-task" else status
        rows.append(ElementRow(z, chemical_symbols[z], mu, fit.element_frames.get(z), shown, _flag(status, z, fit)))
    for z in fit.absent:
        rows.append(ElementRow(z, chemical_symbols[z], None, 0, "absent", _flag("absent", z, fit)))
    return rows


def reference_energy(refs: Mapping[int, float], numbers: np.ndarray) -> float:
    """Σ n_el·μ_el for one frame; elements without a reference contribute 0.0 (the fallback rule)."""
    counts = element_counts(numbers)
    return float(sum(refs.get(int(z), 0.0) * counts[z] for z in np.flatnonzero(counts)))


def write_references(store: Any, fits: Mapping[str, TaskReferences]) -> None:
    """Store the fits in the catalog section ``references`` (atomic catalog update)."""
    store.catalog.update_section(SECTION, {t: f.to_json() for t, f in fits.items()})


def read_references(store: Any) -> dict[str, TaskReferences]:
    """The fits stored in the catalog; a clear error if ``omni-data references`` never ran."""
    section = (store.catalog.sections or {}).get(SECTION)
    if section is None:
        raise KeyError(
            f"{getattr(store, 'path', store)}: no 'references' section in the catalog; "
            "run `omni-data references STORE` first"
        )
    return {t: TaskReferences.from_json(d) for t, d in section.items()}


def load_references(store: Any) -> dict[str, dict[int, float]]:
    """For the trainer: ``{task: {Z: μ_Z}}``. Elements missing from a task's map use 0.0.

    ``store`` may be a ``StoreSet``: its catalog merges the members' sections per task (and
    raises naming both stores when two members disagree on one task).
    """
    return {t: dict(f.mu) for t, f in read_references(store).items()}


def load_force_rms(store: Any) -> dict[str, float | None]:
    """For the trainer: ``{task: force RMS (eV/Å, per component)}``; None if a task has no forces."""
    return {t: f.force_rms for t, f in read_references(store).items()}
