"""Real structures shared by the recompute tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from ase.io import read

from omni_data.schema import Record


@pytest.fixture()
def sic_record(shared_data: Path) -> Record:
    """dpdata's SiC POSCAR (8 atoms, periodic)."""
    a = read(shared_data / "structures" / "poscar" / "dpdata_SiC.POSCAR")
    return Record(
        numbers=a.numbers, positions=a.positions, cell=a.cell.array, pbc=a.pbc, id="mpa:SiC", dataset="mpa", task="mpa"
    )


@pytest.fixture()
def methane_record(shared_data: Path) -> Record:
    """The CH4 of dpdata's OUTCAR, first frame, as a molecule (no cell)."""
    a = read(shared_data / "vasp" / "dpdata_ch4_md_unconverged.OUTCAR", index=0)
    return Record(numbers=a.numbers, positions=a.positions, id="md:CH4", dataset="md", task="md", charge=0.0, spin=1)
