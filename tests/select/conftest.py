"""Descriptors of real structures from the shared sample data, read with ASE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omni_data.schema import Record

REAL_FILES = [
    ("vasp/chgnet_nboc_relax_49steps.OUTCAR", ":"),
    ("vasp/custodian_postprocess_ggau_spin_relax.OUTCAR", ":"),
    ("extxyz/chemreporter_spice_amino_acid_ligand_26frames.extxyz", ":"),
    ("extxyz/schnetpack_md17_ethanol_2000frames_kcalmol.extxyz", "::40"),
    ("extxyz/sevennet_hfo2.extxyz", ":"),
    ("structures/cif/chgnet_mp-18767-LiMnO2.cif", ":"),
    ("structures/cif/fairchem_odac_mof_BIMDIL.cif", ":"),
    ("structures/poscar/dpdata_SiC.POSCAR", ":"),
    ("structures/poscar/mace_x23_benzene_solid.POSCAR", ":"),
]


def atoms_to_record(atoms, rid: str, dataset: str, task: str, source: str = "", index: int = 0) -> Record:
    periodic = bool(atoms.pbc.any())
    energy = None
    if atoms.calc is not None and "energy" in atoms.calc.results:
        energy = float(atoms.get_potential_energy())
    forces = atoms.calc.results.get("forces") if atoms.calc is not None else None
    return Record(
        numbers=atoms.numbers,
        positions=atoms.positions,
        id=rid,
        dataset=dataset,
        task=task,
        cell=np.array(atoms.cell) if periodic else None,
        pbc=atoms.pbc,
        energy=energy,
        forces=forces,
        source_file=source,
        source_index=index,
    ).normalized()


def read_records(shared: Path, rel: str, index: str, task: str) -> list[Record]:
    import ase.io

    frames = ase.io.read(shared / rel, index)
    stem = Path(rel).name.split(".")[0]
    return [atoms_to_record(a, f"{stem}:{i}", stem, task, rel, i) for i, a in enumerate(frames)]


@pytest.fixture(scope="session")
def real_records(shared_data) -> list[Record]:
    tasks = {"vasp": "pbe", "extxyz": "mol", "structures": "crystal"}
    out: list[Record] = []
    for rel, index in REAL_FILES:
        out += read_records(shared_data, rel, index, tasks[rel.split("/")[0]])
    return out


@pytest.fixture(scope="session")
def real_descriptors(real_records) -> np.ndarray:
    from omni_data.select.descriptors import describe_records

    return describe_records(real_records)
