"""Periodic-table layout against positions read off the standard 18-column table."""

from __future__ import annotations

import pytest

from omni_data.report.periodic_table import position


@pytest.mark.parametrize(
    "z,expected",
    [
        (1, (0, 0)),
        (2, (0, 17)),
        (5, (1, 12)),
        (10, (1, 17)),
        (11, (2, 0)),
        (26, (3, 7)),
        (36, (3, 17)),
        (56, (5, 1)),
        (57, (8, 2)),
        (71, (8, 16)),
        (72, (5, 3)),
        (79, (5, 10)),
        (89, (9, 2)),
        (104, (6, 3)),
        (118, (6, 17)),
    ],
)
def test_known_positions(z, expected):
    assert position(z) == expected


def test_every_element_has_its_own_cell():
    cells = [position(z) for z in range(1, 119)]
    assert len(set(cells)) == 118
    with pytest.raises(ValueError, match="119"):
        position(119)
