"""Test helpers shipped with the store: EMT-labelled records and a field-by-field comparison.

Used by the store, pipeline and export tests (and by anyone who needs a small real store): labels
come from ASE's EMT calculator, so energies, forces and stresses are consistent physics, not 0s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from omni_data.schema import FIELDS, Record

__all__ = ["emt_records", "bare_record", "record_differences", "assert_same_records", "write_extxyz"]

ARRAY_FIELDS = tuple(FIELDS)
SCALAR_FIELDS = (
    "id",
    "dataset",
    "task",
    "energy",
    "energy_kind",
    "charge",
    "spin",
    "weight",
    "source_file",
    "source_index",
    "metadata",
)


def emt_records(
    n: int, seed: int = 0, dataset: str = "emt", task: str = "emt", periodic_every: int = 2
) -> list[Record]:
    """``n`` rattled Cu/Al/Ni structures with EMT energy, forces and (periodic) stress."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        element = ("Cu", "Al", "Ni")[i % 3]
        atoms = bulk(element, "fcc", a=3.6 + 0.05 * rng.standard_normal(), cubic=True)
        if i % 5 == 4:
            atoms = atoms.repeat((2, 1, 1))
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        periodic = i % periodic_every == 0
        if not periodic:
            atoms.pbc = False
            atoms.cell = np.zeros((3, 3))
        atoms.calc = EMT()
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        stress = atoms.get_stress(voigt=True) if periodic else None
        out.append(
            Record(
                numbers=atoms.numbers.copy(),
                positions=atoms.positions.copy(),
                id=f"{dataset}:{seed}-{i}",
                dataset=dataset,
                task=task,
                cell=np.array(atoms.cell) if periodic else None,
                pbc=atoms.pbc.copy(),
                energy=float(energy),
                energy_kind="free" if i % 7 == 3 else "total",
                forces=forces,
                stress=stress,
                magmoms=rng.normal(size=len(atoms)) if i % 4 == 1 else None,
                charge=float(i % 3 - 1) if i % 6 == 2 else None,
                spin=int(i % 3 + 1) if i % 6 == 2 else None,
                fixed=(np.arange(len(atoms)) < 2) if i % 8 == 5 else None,
                tags=np.arange(len(atoms)) % 3 if i % 8 == 5 else None,
                weight=1.0 + (i % 2),
                source_file=f"emt_{seed}.traj",
                source_index=i,
                metadata={"element": element, "i": i} if i % 3 else {},
            ).normalized()
        )
    return out


def bare_record(record_id: str = "bare:0") -> Record:
    """A record with every optional field left as None (labels missing, non-periodic)."""
    return Record(
        numbers=np.array([1, 8, 1]),
        positions=np.array([[0.0, 0, 0], [0.96, 0, 0], [1.2, 0.9, 0]]),
        id=record_id,
        dataset="bare",
        task="none",
    ).normalized()


def record_differences(a: Record, b: Record) -> list[str]:
    """Names of fields where ``a`` and ``b`` differ (None vs array counts as a difference)."""
    diffs = []
    for name in ARRAY_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if (x is None) != (y is None):
            diffs.append(name)
        elif x is not None and not (np.asarray(x).shape == np.asarray(y).shape and np.array_equal(x, y)):
            diffs.append(name)
    for name in SCALAR_FIELDS:
        if getattr(a, name) != getattr(b, name):
            diffs.append(name)
    return diffs


def assert_same_records(left: Sequence[Record], right: Sequence[Record]) -> None:
    """Raise AssertionError naming the first record and fields that differ."""
    assert len(left) == len(right), f"{len(left)} records vs {len(right)}"
    for a, b in zip(left, right):
        diffs = record_differences(a, b)
        assert not diffs, f"record {a.id!r} vs {b.id!r} differ in {diffs}"


def write_extxyz(records: Sequence[Record], path: Path) -> Path:
    """Write records as extxyz through ASE (the independent writer the extxyz reader is checked against)."""
    from ase.io import write

    from omni_data.store.atoms import record_to_atoms

    frames = []
    for r in records:
        atoms = record_to_atoms(r)
        atoms.info.pop("omni_id")
        atoms.info["source_id"] = r.id.split(":", 1)[1]
        frames.append(atoms)
    write(str(path), frames, format="extxyz")
    return Path(path)
