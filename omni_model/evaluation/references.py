"""Elements a task head has no reference energy for, and the warning when it predicts them.

A task's per-element reference energies μ_Z (checkpoint key ``references``) are the atomic energy
zero of its head. An element the task's training data never contained has none: its shift starts
at 0 eV, so the head predicts energies tens of eV per atom off the task's scale without any sign
of trouble. ``warn_unreferenced`` says so once per (task, element) and per ``seen`` set.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

__all__ = ["MissingReferenceWarning", "unreferenced", "warn_unreferenced"]


class MissingReferenceWarning(UserWarning):
    """A head predicted energies for elements that have no reference energy in its task."""


def unreferenced(references: Mapping[str, Mapping], task: str, numbers: Iterable[int]) -> list[int]:
    """Elements among ``numbers`` without a reference in ``references[task]``.

    Keys may be ints or strings (checkpoint JSON). A reference of exactly 0.0 counts as missing:
    that is what an element absent from a task's data was stored as by older checkpoints.
    """
    refs = {int(z): float(v) for z, v in (references.get(task) or {}).items()}
    return sorted({int(z) for z in numbers if refs.get(int(z), 0.0) == 0.0})


def warn_unreferenced(
    references: Mapping[str, Mapping], task: str, numbers: Iterable[int], seen: set[tuple[str, int]], where: str = ""
) -> list[int]:
    """Warn (``MissingReferenceWarning``) about elements of ``numbers`` that ``task`` has no
    reference for and that are not yet in ``seen``; adds them to ``seen``. Returns the new ones."""
    from ase.data import chemical_symbols

    new = [z for z in unreferenced(references, task, numbers) if (task, z) not in seen]
    if new:
        seen.update((task, z) for z in new)
        names = ", ".join(chemical_symbols[z] for z in new)
        warnings.warn(
            f"{where + ': ' if where else ''}task {task!r} has no reference energy for {names}; "
            f"its head's energies for structures with them are off by that element's energy zero "
            f"(it never saw them in training)",
            MissingReferenceWarning,
            stacklevel=3,
        )
    return new
