"""Records for harmonize tests, built from real ASE EMT calculations and real sample files."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from omni_data.schema import Record


def emt_record(atoms, task: str, dataset: str, idx: int, **meta) -> Record:
    """One Record labelled by ASE's EMT calculator (energy, forces, stress in ASE units/sign)."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    return Record(
        numbers=atoms.numbers.copy(),
        positions=atoms.positions.copy(),
        cell=atoms.cell.array.copy(),
        pbc=atoms.pbc.copy(),
        energy=float(atoms.get_potential_energy()),
        forces=atoms.get_forces().copy(),
        stress=atoms.get_stress().copy(),
        id=f"{dataset}:{idx}",
        dataset=dataset,
        task=task,
        source_file=f"emt-{dataset}",
        source_index=idx,
        metadata=dict(meta),
    ).normalized()


def emt_alloys(n: int, seed: int, task: str = "emt", dataset: str = "alloys") -> list[Record]:
    """``n`` random Cu/Ni/Al/Au fcc alloys (2x2x1 to 2x2x2 cells) with rattled positions."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        reps = (2, 2, int(rng.integers(1, 3)))
        atoms = bulk("Cu", "fcc", a=3.6, cubic=False).repeat(reps)
        atoms.numbers = rng.choice([29, 28, 13, 79], size=len(atoms))
        atoms.rattle(stdev=0.05, seed=int(rng.integers(1 << 30)))
        out.append(emt_record(atoms, task, dataset, i))
    return out


@pytest.fixture(scope="session")
def alloys() -> list[Record]:
    return emt_alloys(40, seed=1)


def atoms_record(atoms, task: str, dataset: str, idx: int, source_file: str = "", **meta) -> Record:
    """A Record from an ASE Atoms read from a real file (labels from its SinglePointCalculator)."""
    calc = atoms.calc
    res = getattr(calc, "results", {}) if calc is not None else {}
    cell = atoms.cell.array.copy() if atoms.pbc.any() else None
    return Record(
        numbers=atoms.numbers.copy(),
        positions=atoms.positions.copy(),
        cell=cell,
        pbc=atoms.pbc.copy(),
        energy=float(res["energy"]) if "energy" in res else None,
        forces=np.array(res["forces"]) if "forces" in res else None,
        stress=np.array(res["stress"]).reshape(-1)[:6] if np.size(res.get("stress", [])) == 6 else None,
        id=f"{dataset}:{idx}",
        dataset=dataset,
        task=task,
        source_file=source_file,
        source_index=idx,
        metadata=dict(meta),
    ).normalized()


def make_store(path, shards: dict[str, list[Record]]):
    """A store with one shard per entry, written by the real store writer."""
    from omni_data.store import Store, write_shard

    for name, recs in shards.items():
        write_shard(path, name, recs)
    return Store(path)
