"""The default descriptor: invariances, hand-computed values, and that it separates systems."""

from __future__ import annotations

import math

import numpy as np
import pytest

from omni_data.schema import Record
from omni_data.select.descriptors import RDFSpec, describe_record, describe_records, element_table

from .conftest import atoms_to_record


def _read(shared, rel):
    import ase.io

    return ase.io.read(shared / rel)


@pytest.mark.parametrize(
    "rel",
    [
        "structures/cif/fairchem_odac_mof_BIMDIL.cif",
        "structures/poscar/dpdata_SiC.POSCAR",
        "extxyz/chemreporter_slab_capital_Energy_key.extxyz",
    ],
)
def test_rotation_permutation_translation_supercell_invariance(shared_data, rel):
    atoms = _read(shared_data, rel)
    v = describe_record(atoms_to_record(atoms, "a", "d", "t"))
    moved = atoms.copy()
    moved.rotate(33, "x", rotate_cell=True)
    moved.rotate(-71, "z", rotate_cell=True)
    moved.translate([0.3, -1.1, 2.0])
    moved = moved[np.random.default_rng(0).permutation(len(moved))]
    np.testing.assert_allclose(describe_record(atoms_to_record(moved, "b", "d", "t")), v, atol=2e-6)
    big = atoms.repeat((2, 1, 1))
    np.testing.assert_allclose(describe_record(atoms_to_record(big, "c", "d", "t")), v, atol=2e-6)
    assert v.dtype == np.float32 and v.shape == (64,)


def test_composition_part_by_hand(shared_data):
    from ase.data import atomic_masses, covalent_radii

    atoms = _read(shared_data, "structures/poscar/dpdata_SiC.POSCAR")  # C4Si4
    v = describe_record(atoms_to_record(atoms, "sic", "d", "t"))
    # group: C 14, Si 14; period: C 2, Si 3; Pauling X: C 2.55, Si 1.90
    assert v[0] == pytest.approx(14 / 18, abs=1e-6)
    assert v[1] == pytest.approx(2.5 / 7, abs=1e-6)
    assert v[2] == pytest.approx((2.55 + 1.90) / 2 / 4, abs=1e-6)
    assert v[3] == pytest.approx((covalent_radii[6] + covalent_radii[14]) / 2 / 2.5, abs=1e-6)
    lm = [math.log(atomic_masses[z]) / math.log(300) for z in (6, 14)]
    assert v[4] == pytest.approx(sum(lm) / 2, abs=1e-6)
    assert v[5] == pytest.approx(0.0, abs=1e-6)  # same group: no spread
    assert v[6] == pytest.approx(0.5 / 7, abs=1e-6)  # periods 2 and 3: std 0.5
    np.testing.assert_allclose(v[10:14], [0, 1, 0, 0])  # all p-block
    assert v[14] == 1.0
    assert v[15] == pytest.approx(10 * 8 / atoms.get_volume(), rel=1e-6)


def test_radial_part_of_a_dimer_by_hand():
    # H2 at 0.74 Å, no cell: one (H,H) pair; per-atom sum = 2 * g(0.74) / 2 atoms
    spec = RDFSpec()
    rec = Record(
        numbers=np.array([1, 1]), positions=np.array([[0, 0, 0], [0.74, 0, 0]]), id="h2", dataset="d", task="t"
    ).normalized()
    v = describe_record(rec, spec)
    d = 0.74
    fc = 0.5 * (math.cos(math.pi * d / spec.cutoff) + 1)
    want = [math.log1p(math.exp(-0.5 * ((d - mu) / spec.sigma) ** 2) * fc) for mu in spec.centers]
    np.testing.assert_allclose(v[16:24], want, rtol=1e-6)
    assert np.all(v[24:] == 0)  # no other pair classes
    assert v[14] == 0 and v[15] == 0  # no periodicity, no density


def test_separates_molecules_crystals_and_mofs(real_records):
    x = describe_records(real_records)
    kinds = np.array([r.dataset for r in real_records])
    md = x[kinds == "schnetpack_md17_ethanol_2000frames_kcalmol"]
    mof = x[kinds == "fairchem_odac_mof_BIMDIL"][0]
    sic = x[kinds == "dpdata_SiC"][0]
    within = np.linalg.norm(md - md[0], axis=1).max()
    assert within < 0.5 * np.linalg.norm(mof - md[0])
    assert within < 0.5 * np.linalg.norm(sic - md[0])
    assert np.linalg.norm(mof - sic) > within


def test_element_table_classes():
    props, blocks, classes = element_table()
    assert classes[1] == 0 and classes[8] == 1 and classes[26] == 2 and classes[14] == 1
    assert blocks[26].tolist() == [0, 0, 1, 0]
    assert props[2, 2] == 0.0  # helium: no Pauling electronegativity


def test_bad_records_and_missing_soap():
    rec = Record(numbers=np.array([0]), positions=np.zeros((1, 3)), id="bad", dataset="d", task="t").normalized()
    with pytest.raises(ValueError, match="bad"):
        describe_record(rec)
    with pytest.raises(ValueError, match="unknown descriptor kind"):
        describe_records([], kind="acsf")
    try:
        import dscribe  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="dscribe"):
            describe_records([rec], kind="soap")
