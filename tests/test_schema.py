"""omni_data.schema: what a record is (fields, dtypes, shapes) and ``Record.normalized``."""

from __future__ import annotations

import numpy as np
import pytest

from omni_data.schema import FIELDS, OPTIONAL_LABELS, Record
from omni_data.store.testing import bare_record


def _rec(**kw) -> Record:
    """The water molecule of ``store.testing.bare_record`` (3 atoms, non-periodic) with ``kw`` set."""
    base = bare_record()
    return Record(**{**{f: getattr(base, f) for f in ("numbers", "positions", "id", "dataset", "task")}, **kw})


def test_normalized_keeps_conforming_arrays_and_casts_others() -> None:
    pos = np.zeros((2, 3))
    forces = np.ones((2, 3), dtype=np.float32)
    rec = _rec(positions=pos, forces=forces, numbers=[1, 8], tags=np.array([0, 1], dtype=np.int32)).normalized()
    assert rec.positions is pos  # already float64 (2, 3): no copy, no new view
    assert rec.forces.dtype == np.float64 and rec.forces.tolist() == [[1, 1, 1]] * 2
    assert rec.numbers.dtype == np.int64 and rec.tags.dtype == np.int64
    flat = _rec(numbers=[1, 8], positions=np.arange(6.0)).normalized()
    assert flat.positions.shape == (2, 3)
    with pytest.raises(ValueError):
        _rec(cell=np.eye(3) * 5.0, pbc=[True] * 3, stress=np.zeros(5)).normalized()


def test_optional_labels_are_those_a_structure_is_stored_without() -> None:
    assert OPTIONAL_LABELS == ("magmoms", "charge", "spin", "fixed", "tags")


def test_every_field_has_a_unit_dtype_and_shape_records_are_cast_to() -> None:
    rec = _rec(
        cell=np.eye(3) * 5.0, pbc=[True] * 3, forces=[[0, 0, 1]] * 3, stress=[0] * 6, magmoms=[0, 1, 0]
    ).normalized()
    for name in ("numbers", "positions", "cell", "pbc", "forces", "stress", "magmoms"):
        spec, value = FIELDS[name], getattr(rec, name)
        assert value.dtype == np.dtype(spec.dtype), name
        assert value.shape == tuple(len(rec.numbers) if s == "n" else s for s in spec.shape), name
