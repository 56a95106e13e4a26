"""Atom-block parsing of extxyz frames: columns by Properties, species mapped to Z, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from omni_data.readers._xyz_atoms import atom_block, numbers
from omni_data.readers.extxyz import _symbols

SYMBOLS = _symbols()
PROPS = [("species", "S", 1), ("pos", "R", 3), ("forces", "R", 3)]


def test_columns_and_species_to_numbers() -> None:
    lines = [b"Si 0.0 1.0 2.0 0.1 0.2 0.3\n", b"O 3.0 4.0 5.0 -0.1 -0.2 -0.3\n", b"cu 1 1 1 0 0 0\n"]
    arrays = atom_block(lines, PROPS, loose=False)
    assert arrays["pos"].tolist() == [[0, 1, 2], [3, 4, 5], [1, 1, 1]]
    assert arrays["forces"][1].tolist() == [-0.1, -0.2, -0.3]
    z = numbers(arrays, SYMBOLS)
    assert z.dtype == np.int64 and z.tolist() == [14, 8, 29]


def test_z_column_preferred_and_integer_columns() -> None:
    props = [("species", "S", 1), ("pos", "R", 3), ("Z", "I", 1), ("move_mask", "L", 1)]
    arrays = atom_block([b"H 0 0 0 8 T", b"H 1 0 0 1 F"], props, loose=False)
    assert numbers(arrays, SYMBOLS).tolist() == [8, 1]
    assert arrays["Z"].dtype == np.int64 and arrays["move_mask"].tolist() == [True, False]
    with pytest.raises(ValueError, match="'Z' \\(I\\) holds non-integers"):
        atom_block([b"H 0 0 0 8.5 T"], props, loose=False)


def test_unknown_symbol_and_non_utf8_are_named() -> None:
    arrays = atom_block([b"H 0 0 0 0 0 0", b"Xq 0 0 0 0 0 0"], PROPS, loose=False)
    with pytest.raises(ValueError, match="unknown element symbol 'Xq' at atom 1"):
        numbers(arrays, SYMBOLS)
    with pytest.raises(ValueError, match="column 'species' is not UTF-8 text"):
        atom_block([b"H 0 0 0 0 0 0", b"\xff 0 0 0 0 0 0"], PROPS, loose=False)


def test_trailing_nul_symbol_maps_like_numpy_text() -> None:
    # numpy text arrays drop trailing NULs, so "H\0" has always read as hydrogen: keep that
    arrays = atom_block([b"H\x00 0 0 0 0 0 0"], PROPS, loose=False)
    assert numbers(arrays, SYMBOLS).tolist() == [1]


def test_column_count_errors_and_loose_mode() -> None:
    with pytest.raises(ValueError, match="atom line 2 has 6 columns, Properties declare 7"):
        atom_block([b"H 0 0 0 0 0 0", b"H 0 0 0 0 0"], PROPS, loose=False)
    with pytest.raises(ValueError, match="non-numeric value"):
        atom_block([b"H 0 0 zero 0 0 0"], PROPS, loose=False)
    arrays = atom_block([b"C 1 2 3 9 9 9", b"H 4 5 6"], [("species", "S", 1), ("pos", "R", 3)], loose=True)
    assert arrays["pos"].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_empty_block() -> None:
    arrays = atom_block([], PROPS, loose=False)
    assert arrays["pos"].shape == (0, 3) and numbers(arrays, SYMBOLS).tolist() == []
