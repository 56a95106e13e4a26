"""Record validation (``problem``) and ``normalized``: the fast paths give numpy's answers."""
from __future__ import annotations

import numpy as np
import pytest

from omni_data.schema import Record, _zero_volume, problem


def _rec(**kw) -> Record:
    base = dict(numbers=np.array([1, 8]), positions=np.zeros((2, 3)), id="d:1", dataset="d", task="t",
                cell=np.eye(3) * 5.0, pbc=np.array([True, True, True]))
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
    assert problem(_rec(magmoms=[0.0, np.nan])) == "nonfinite:magmoms"
    assert problem(_rec(stress=np.zeros((3, 3)))) is None
    assert problem(_rec(positions=np.full((2, 3), np.inf, dtype=np.float32))) == "nonfinite:positions"


def test_normalized_keeps_conforming_arrays_and_casts_others() -> None:
    pos = np.zeros((2, 3))
    forces = np.ones((2, 3), dtype=np.float32)
    rec = _rec(positions=pos, forces=forces, numbers=[1, 8], tags=np.array([0, 1], dtype=np.int32)).normalized()
    assert rec.positions is pos  # already float64 (2, 3): no copy, no new view
    assert rec.forces.dtype == np.float64 and rec.forces.tolist() == [[1, 1, 1]] * 2
    assert rec.numbers.dtype == np.int64 and rec.tags.dtype == np.int64
    flat = _rec(positions=np.arange(6.0)).normalized()
    assert flat.positions.shape == (2, 3)
    with pytest.raises(ValueError):
        _rec(stress=np.zeros(5)).normalized()
