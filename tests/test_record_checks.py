"""omni_data.record_checks: ``problem``, invalid optional labels, atoms under the 0.1 Å floor;
the fast paths give numpy's (or ASE's) answers."""

from __future__ import annotations

import numpy as np
import pytest

from omni_data.record_checks import _zero_volume, close_contact, close_contacts, drop_invalid_optional, problem
from omni_data.schema import MIN_INTERATOMIC_DISTANCE, Record


def _rec(**kw) -> Record:
    base = dict(
        numbers=np.array([1, 8]),
        positions=np.zeros((2, 3)),
        id="d:1",
        dataset="d",
        task="t",
        cell=np.eye(3) * 5.0,
        pbc=np.array([True, True, True]),
    )
    base.update(kw)
    return Record(**base)


@pytest.mark.parametrize("scale", [1e-3, 1e-2, 0.0099999, 0.0100001, 1.0, 1e3])
def test_zero_volume_matches_numpy_determinant(scale: float) -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        cell = rng.normal(0, 1, (3, 3)) * scale
        cell[2] = cell[0] * rng.uniform(-1, 1) + cell[1] * rng.uniform(-1, 1) + rng.normal(0, 1e-7, 3) * scale
        assert _zero_volume(cell) == (abs(np.linalg.det(cell)) < 1e-6)
    # a cube of edge 0.01 has volume exactly 1e-6: not below the threshold; a hair smaller is
    assert _zero_volume(np.eye(3) * 0.01) is False
    assert _zero_volume(np.eye(3) * 0.0099) is True


def test_problem_reasons() -> None:
    assert problem(_rec()) is None
    assert problem(_rec(numbers=np.array([0, 8]))) == "bad_value:atomic number out of 1..118 (0..8)"
    assert problem(_rec(numbers=np.array([1, 119], dtype=np.uint8))) == "bad_value:atomic number out of 1..118 (1..119)"
    assert problem(_rec(numbers=np.array([1.0, 200.0]))) == "bad_value:atomic number out of 1..118 (1..200)"
    assert problem(_rec(cell=np.diag([5.0, 5.0, 0.0]))) == "bad_value:periodic cell with zero volume"
    assert problem(_rec(cell=np.diag([5.0, 5.0, 0.0]), pbc=np.array([False] * 3))) is None
    assert problem(_rec(cell=None)) == "missing:cell for a periodic structure"
    assert problem(_rec(cell=None, pbc=[False, False, False])) is None
    assert problem(_rec(cell=None, pbc=[True, False, False])) == "missing:cell for a periodic structure"
    assert problem(_rec(forces=np.zeros((2, 2)))) == "bad_shape:forces (2, 2), expected (2, 3)"
    assert problem(_rec(stress=np.array([0.0] * 5 + [np.nan]))) == "nonfinite:stress"
    assert problem(_rec(energy=float("inf"))) == "nonfinite:energy"
    assert problem(_rec(stress=np.zeros((3, 3)))) is None
    assert problem(_rec(positions=np.full((2, 3), np.inf, dtype=np.float32))) == "nonfinite:positions"


@pytest.mark.parametrize(
    "label, value, why",
    [
        ("spin", 0.0, "spin multiplicity 0 < 1"),  # SchNetPack's "not set"
        ("spin", -1, "spin multiplicity -1 < 1"),
        ("spin", 2.5, "spin multiplicity 2.5 is not an integer"),
        ("spin", float("nan"), "spin nan is not finite"),
        ("charge", float("inf"), "charge inf is not finite"),
        ("charge", "n/a", "charge 'n/a' is not a number"),
        ("magmoms", [0.0, np.nan], "magmoms has non-finite values"),
        ("magmoms", [1.0, 2.0, 3.0], "magmoms shape (3,), expected (2,)"),
        ("tags", [0.5, 1.0], "tags are not integers"),
        ("fixed", [0, 2], "fixed has values other than 0/1"),
    ],
)
def test_invalid_optional_label_is_dropped_and_noted_record_kept(label, value, why) -> None:
    rec = _rec(energy=-1.5, forces=np.ones((2, 3)), **{label: value})
    assert problem(rec) is None  # not a reason to quarantine: the structure and its labels stay
    assert getattr(rec, label) is None
    assert rec.metadata["dropped_labels"] == {label: why}
    assert rec.energy == -1.5 and rec.forces.tolist() == [[1.0] * 3] * 2
    rec.normalized()  # and it normalizes without the dropped label
    assert drop_invalid_optional(rec) == []  # a second pass changes nothing


def test_valid_optional_labels_are_kept() -> None:
    rec = _rec(spin=3.0, charge=-1, magmoms=[0.5, -0.5], tags=[0.0, 1.0], fixed=[True, False])
    assert drop_invalid_optional(rec) == [] and problem(rec) is None
    rec.normalized()
    assert rec.spin == 3 and rec.charge == -1.0 and rec.tags.tolist() == [0, 1]
    assert "dropped_labels" not in rec.metadata


def test_several_invalid_optional_labels_are_all_named() -> None:
    rec = _rec(spin=0, charge=float("nan"))
    assert drop_invalid_optional(rec) == ["charge", "spin"]
    assert rec.spin is None and rec.charge is None
    assert sorted(rec.metadata["dropped_labels"]) == ["charge", "spin"]


def test_invalid_required_fields_still_quarantine_with_optional_labels_untouched() -> None:
    rec = _rec(forces=np.full((2, 3), np.nan), spin=0)
    assert problem(rec) == "nonfinite:forces"
    assert rec.spin == 0 and "dropped_labels" not in rec.metadata  # nothing changed on a rejected record


def _pair(distance: float, **kw) -> Record:
    return _rec(positions=np.array([[1.0, 1.0, 1.0], [1.0 + distance, 1.0, 1.0]]), **kw)


def test_close_contact_names_the_pair_under_the_floor() -> None:
    assert MIN_INTERATOMIC_DISTANCE == 0.1
    assert close_contact(_pair(0.0)) == "bad_value:atoms 0 and 1 are 0.000 Å apart (< 0.1 Å)"
    assert (
        close_contact(_pair(0.05, cell=None, pbc=[False] * 3)) == "bad_value:atoms 0 and 1 are 0.050 Å apart (< 0.1 Å)"
    )
    assert close_contact(_pair(0.0999)) == "bad_value:atoms 0 and 1 are 0.100 Å apart (< 0.1 Å)"
    assert close_contact(_pair(0.1)) is None  # the floor itself is allowed
    assert close_contact(_pair(0.74)) is None  # H2


def test_close_contact_across_the_periodic_boundary_only() -> None:
    # 4.97 Å apart in the box, 0.03 Å apart through the face x = 0 / x = 5 (minimum image)
    rec = _rec(positions=np.array([[0.01, 2.0, 2.0], [4.98, 2.0, 2.0]]))
    assert close_contact(rec) == "bad_value:atoms 0 and 1 are 0.030 Å apart (< 0.1 Å)"
    # the same coordinates as a molecule are fine, and so is a slab periodic in y and z only
    assert close_contact(_rec(positions=rec.positions, cell=None, pbc=[False] * 3)) is None
    assert close_contact(_rec(positions=rec.positions, pbc=[False, True, True])) is None
    # a skewed cell: the image is through a + b, not along a single vector
    cell = np.array([[5.0, 0.0, 0.0], [2.5, 4.0, 0.0], [0.0, 0.0, 6.0]])
    near = np.array([[0.02, 0.02, 1.0], [7.5 - 0.02, 4.0 - 0.02, 1.0]])  # a + b - (0.04, 0.04, 0)
    assert close_contact(_rec(positions=near, cell=cell)) == "bad_value:atoms 0 and 1 are 0.057 Å apart (< 0.1 Å)"


def test_close_contact_one_atom_in_a_tiny_cell_meets_its_own_image() -> None:
    one = dict(numbers=np.array([29]), positions=np.zeros((1, 3)))
    assert (
        close_contact(_rec(cell=np.eye(3) * 0.05, **one))
        == "bad_value:atom 0 and its own periodic image are 0.050 Å apart (< 0.1 Å)"
    )
    assert close_contact(_rec(cell=np.eye(3) * 2.5, **one)) is None  # a real simple-cubic-sized cell
    # a 0.05 Å vector along a non-periodic direction makes no image
    assert close_contact(_rec(cell=np.diag([3.0, 3.0, 0.05]), pbc=[True, True, False], **one)) is None
    # a very skewed description of a sensible lattice (plane spacing 0.05 Å) has no short image
    skewed = np.array([[2.5, 0.0, 0.0], [0.0, 2.5, 0.0], [125.0, 0.0, 2.5]])
    assert close_contact(_rec(cell=skewed, **one)) is None
    assert (
        close_contact(
            _rec(cell=skewed, numbers=np.array([29, 29]), positions=np.array([[0.0, 0.0, 0.0], [125.06, 0.0, 2.5]]))
        )
        == "bad_value:atoms 0 and 1 are 0.060 Å apart (< 0.1 Å)"
    )


@pytest.mark.parametrize("periodic", [False, True])
def test_close_contact_large_structure_matches_ase_neighbor_list(periodic: bool) -> None:
    """Above the brute-force size the KD-tree path runs; ASE's neighbour list is the reference."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    rng = np.random.default_rng(7)
    n = 2000
    cell = np.array([[15.0, 0.0, 0.0], [2.0, 14.0, 0.0], [0.5, 1.0, 13.0]])
    pos = rng.uniform(0, 1, (n, 3)) @ cell
    atoms = Atoms(numbers=[6] * n, positions=pos, cell=cell, pbc=periodic)
    i, j, d = neighbor_list("ijd", atoms, 0.1, self_interaction=False)
    assert len(d) > 0  # random points at this density: a few pairs fall under 0.1 Å
    k = int(np.argmin(d))
    expected = f"bad_value:atoms {min(i[k], j[k])} and {max(i[k], j[k])} are {d[k]:.3f} Å apart (< 0.1 Å)"
    rec = _rec(numbers=atoms.numbers, positions=pos, cell=cell if periodic else None, pbc=[periodic] * 3)
    assert close_contact(rec) == expected


def test_cell_entries_near_the_float_limit_are_a_reason_not_an_overflow() -> None:
    """Found by the reader fuzzer: ``scale ** 3`` raised OverflowError for a cell entry near 1e308."""
    huge = np.diag([1e308, 5.0, 5.0])
    assert problem(_rec(cell=huge)) == "bad_value:periodic cell volume overflows (entries up to 1e+308 Å)"
    assert problem(_rec(cell=np.diag([1e200, 1e-200, 1e-200]))) == "bad_value:periodic cell with zero volume"
    assert problem(_rec(cell=np.diag([1e150, 1e-100, 1.0]))) is None  # 1e50 Å³: odd, but a number
    assert _zero_volume(np.diag([1e308, 0.0, 1.0])) is True


def test_close_contacts_batched_give_the_single_answers() -> None:
    """Triage checks a partition at once (small structures grouped by atom count); each answer
    must be the one ``close_contact`` gives for that record alone."""
    rng = np.random.default_rng(11)
    records = []
    for k in range(400):
        n = int(rng.choice([1, 2, 3, 9, 40, 80]))
        periodic = [[True] * 3, [False] * 3, [True, True, False]][k % 3]
        cell = np.diag(rng.uniform(1.5, 4.0, 3)) + rng.normal(0, 0.3, (3, 3))
        if k % 50 == 7:
            cell = np.eye(3) * 0.07  # thin: the answer is an atom and its own image
        pos = rng.uniform(0, 3.0, (n, 3))
        records.append(_rec(numbers=np.ones(n, dtype=np.int64), positions=pos, cell=cell, pbc=periodic))
    single = [close_contact(r) for r in records]
    assert close_contacts(records) == single
    assert sum(s is not None for s in single) > 50 and sum(s is None for s in single) > 50


def test_close_contact_crowded_atoms_stay_linear_in_memory() -> None:
    """20,000 atoms on one spot (a hostile file) would be 2e8 pairs; the answer comes from one sort."""
    crowd = _rec(numbers=np.ones(20_000, dtype=np.int64), positions=np.zeros((20_000, 3)), cell=None, pbc=[False] * 3)
    assert close_contact(crowd) == "bad_value:atoms 0 and 1 are 0.000 Å apart (< 0.1 Å)"
