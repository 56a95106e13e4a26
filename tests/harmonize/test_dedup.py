"""Structure hash on real structures: copies hash equal, different frames hash differently."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest

from omni_data.harmonize.dedup import lattice_automorphisms, structure_hash

CRYSTALS = [
    "structures/poscar/dpdata_SiC.POSCAR",
    "structures/poscar/dpdata_P42nmc.POSCAR",  # tetragonal: 16 lattice automorphisms
    "structures/cif/chgnet_mp-18767-LiMnO2.cif",
    "structures/cif/fairchem_odac_mof_BIMDIL.cif",
]


def _h(atoms, tol=1e-4):
    return structure_hash(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, tol)


@pytest.mark.parametrize("rattle", [0.0, 0.02])
@pytest.mark.parametrize("name", CRYSTALS)
def test_copies_of_a_real_crystal_hash_equal(shared_data, name, rattle):
    # rattled: origin candidates are narrowed by an invariant key; perfect: all of them tie
    atoms = ase.io.read(shared_data / name)
    if rattle:
        atoms.rattle(rattle, seed=5)
    ref = _h(atoms)
    rng = np.random.default_rng(3)
    moved = atoms[rng.permutation(len(atoms))]
    moved.translate([0.31, -1.7, 2.9])
    moved.wrap()
    assert _h(moved) == ref
    # the same lattice in another basis: a' = a + b, b' = b, c' = c + a - b (det 1)
    m = np.array([[1, 1, 0], [0, 1, 0], [1, -1, 1]])
    other = moved.copy()
    other.set_cell(m @ moved.cell.array, scale_atoms=False)
    other.wrap()
    assert not np.allclose(other.cell.array, atoms.cell.array)
    assert _h(other) == ref
    # rotating the whole frame does not matter either (fractional coordinates + metric)
    rotated = atoms.copy()
    rotated.rotate(37, "z", rotate_cell=True)
    assert _h(rotated) == ref


@pytest.mark.parametrize("name", CRYSTALS[:2])
def test_changed_structure_hashes_differently(shared_data, name):
    atoms = ase.io.read(shared_data / name)
    ref = _h(atoms)
    nudged = atoms.copy()
    nudged.positions[0, 0] += 0.01
    assert _h(nudged) != ref
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array * 1.001, scale_atoms=True)
    assert _h(strained) != ref
    # a supercell is a different frame (more atoms, different total energy)
    assert _h(atoms.repeat((2, 1, 1))) != ref


def test_consecutive_relaxation_frames_differ(shared_data):
    frames = ase.io.read(shared_data / "vasp/chgnet_nboc_relax_49steps.vasprun.xml", index=":")
    hashes = [_h(a) for a in frames]
    assert len(frames) == 49
    assert len(set(hashes)) == 49
    # ... while a permuted copy of one of them is recognised
    a = frames[10][np.random.default_rng(0).permutation(len(frames[10]))]
    assert _h(a) == hashes[10]


def test_molecules_order_and_translation(shared_data):
    frames = ase.io.read(shared_data / "extxyz/chemreporter_spice_amino_acid_ligand_26frames.extxyz", index=":5")
    for a in frames:
        assert not a.pbc.any()
        b = a[np.random.default_rng(1).permutation(len(a))]
        b.translate([5.0, -2.0, 0.5])
        assert _h(b) == _h(a)
    assert len({_h(a) for a in frames}) == 5


def test_automorphisms_of_cubic_lattice():
    # the cubic point group has 48 elements; a triclinic cell only ±identity
    assert len(lattice_automorphisms(np.eye(3) * 4.0)) == 48
    tric = np.array([[4.0, 0, 0], [0.3, 4.4, 0], [0.2, 0.5, 5.1]])
    assert len(lattice_automorphisms(tric)) == 2


def test_empty_structure_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        structure_hash(np.zeros(0, int), np.zeros((0, 3)), None, np.zeros(3, bool))


def _unimodular_from(ops: list[tuple[int, int, int]]) -> np.ndarray:
    """Product of elementary integer row operations: row i += k * row j (det stays 1)."""
    m = np.eye(3, dtype=int)
    for i, j, k in ops:
        if i != j:
            e = np.eye(3, dtype=int)
            e[i, j] = k
            m = e @ m
    return m


def test_hash_invariance_property(shared_data):
    # hypothesis draws permutations, translations and basis changes of a real LiMnO2 cell
    from hypothesis import given, settings
    from hypothesis import strategies as st

    atoms = ase.io.read(shared_data / "structures/cif/chgnet_mp-18767-LiMnO2.cif")
    ref = _h(atoms)
    op = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(-2, 2))

    @settings(max_examples=30, deadline=None)
    @given(seed=st.integers(0, 2**31), shift=st.tuples(*[st.floats(-20, 20)] * 3), ops=st.lists(op, max_size=4))
    def check(seed, shift, ops):
        other = atoms[np.random.default_rng(seed).permutation(len(atoms))]
        other.translate(shift)
        other.set_cell(_unimodular_from(ops) @ other.cell.array, scale_atoms=False)
        other.wrap()
        assert _h(other) == ref

    check()


def test_slab_hash_ignores_vacuum_and_in_plane_translation(shared_data):
    # the real SiC cell as a slab: periodic in a and b only
    atoms = ase.io.read(shared_data / "structures/poscar/dpdata_SiC.POSCAR")
    atoms.pbc = (True, True, False)
    ref = _h(atoms)
    more_vacuum = atoms.copy()
    more_vacuum.cell[2] = atoms.cell[2] * 3.0
    assert _h(more_vacuum) == ref
    moved = atoms[np.random.default_rng(2).permutation(len(atoms))]
    moved.translate(0.37 * atoms.cell[0] + 1.3 * atoms.cell[1] + [0.0, 0.0, 4.0])
    moved.wrap()  # wraps along a and b only
    assert _h(moved) == ref
    # a zero-length non-periodic vector is fine too
    flat = atoms.copy()
    flat.cell[2] = 0.0
    assert _h(flat) == ref
    lifted = atoms.copy()
    lifted.positions[0, 2] += 0.05
    assert _h(lifted) != ref
