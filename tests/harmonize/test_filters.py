"""Manifest filters on real structures; distances checked against ASE's neighbour list."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from omni_data.harmonize.filters import apply_filters, min_distance
from omni_data.manifest import Filters
from tests.harmonize.conftest import atoms_record


@pytest.fixture(scope="module")
def hfo2(shared_data):
    frames = ase.io.read(shared_data / "extxyz/sevennet_hfo2.extxyz", index=":")
    return [atoms_record(a, "scan", "hfo2", i) for i, a in enumerate(frames)], frames


def test_no_filters_pass(hfo2):
    recs, _ = hfo2
    assert apply_filters(recs[0], Filters()) is None


def test_max_force_against_ase(hfo2):
    recs, frames = hfo2
    fmax = np.linalg.norm(frames[0].get_forces(), axis=1).max()
    assert apply_filters(recs[0], Filters(max_force=fmax * 1.01)) is None
    reason = apply_filters(recs[0], Filters(max_force=fmax * 0.99))
    assert reason.startswith("filter:max_force") and f"{fmax:.4g}" in reason


def test_energy_per_atom_window(hfo2):
    recs, frames = hfo2
    epa = frames[0].get_potential_energy() / len(frames[0])
    assert apply_filters(recs[0], Filters(energy_per_atom=(epa - 0.1, epa + 0.1))) is None
    reason = apply_filters(recs[0], Filters(energy_per_atom=(epa + 0.1, 0.0)))
    assert reason.startswith("filter:energy_per_atom")


def test_max_stress(hfo2):
    recs, frames = hfo2
    smax = np.abs(frames[0].get_stress()).max()
    assert apply_filters(recs[0], Filters(max_stress=smax * 1.01)) is None
    assert apply_filters(recs[0], Filters(max_stress=smax * 0.99)).startswith("filter:max_stress")


@pytest.mark.parametrize("name", ["poscar/dpdata_SiC.POSCAR", "cif/chgnet_mp-18767-LiMnO2.cif"])
def test_min_distance_matches_ase_periodic(shared_data, name):
    atoms = ase.io.read(shared_data / "structures" / name)
    rec = atoms_record(atoms, "t", "d", 0)
    d_ase = neighbor_list("d", atoms, 4.0).min()
    d, _, _ = min_distance(rec, 4.0)
    assert d == pytest.approx(d_ase, abs=1e-9)
    assert apply_filters(rec, Filters(min_distance=d_ase * 0.99)) is None
    assert apply_filters(rec, Filters(min_distance=d_ase * 1.01)).startswith("filter:min_distance")


def test_min_distance_sees_periodic_images(shared_data):
    # move one atom of real SiC so that its closest contact is across the cell boundary
    atoms = ase.io.read(shared_data / "structures/poscar/dpdata_SiC.POSCAR")
    frac = atoms.get_scaled_positions()
    frac[1] = frac[0] + np.array([0.999, 0.0, 0.0])  # image distance ~0.001·|a|
    atoms.set_scaled_positions(frac)
    rec = atoms_record(atoms, "t", "d", 0)
    expected = neighbor_list("d", atoms, 1.0).min()
    assert expected < 0.05
    # without periodicity the two atoms are a whole lattice vector apart
    molecule = atoms_record(atoms, "t", "d", 0)
    molecule.pbc[:] = False
    molecule.cell = None
    assert min_distance(molecule, 1.0) is None
    assert min_distance(rec, 1.0)[0] == pytest.approx(expected, abs=1e-9)
    assert apply_filters(rec, Filters(min_distance=0.5)).startswith("filter:min_distance")


def test_min_distance_own_image_small_cell():
    from omni_data.schema import Record

    rec = Record(
        numbers=np.array([29]),
        positions=np.zeros((1, 3)),
        cell=np.eye(3) * 1.5,
        pbc=np.ones(3, bool),
        id="x:0",
        dataset="x",
        task="t",
    )
    assert min_distance(rec, 2.0)[0] == pytest.approx(1.5)
