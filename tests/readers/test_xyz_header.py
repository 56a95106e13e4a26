"""The comment-line parser: the fast path for plain ``key=value`` lines gives exactly what the full
extxyz grammar gives (https://github.com/libAtoms/extxyz; ASE's ``key_val_str_to_dict``)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from omni_data.readers._xyz_header import _SIMPLE_LINE, HeaderError, parse_header, parse_header_general


def _same(a: dict, b: dict) -> bool:
    if list(a) != list(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (
                isinstance(x, np.ndarray)
                and isinstance(y, np.ndarray)
                and x.dtype == y.dtype
                and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
            ):
                return False
        elif type(x) is not type(y) or repr(x) != repr(y):  # repr: nan equals nan
            return False
    return True


LINES = [
    'Lattice="5.0 0.0 0.0 0.0 5.0 0.0 0.0 0.0 5.0" Properties=species:S:1:pos:R:3 energy=-1.5 pbc="T T T"',
    'energy=-3 config_id=7 name=bulk pbc="F F F" stress="1 2 3 4 5 6" flag=T other=False',
    'Properties=species:S:1:pos:R:3  energy=1e-3   tag="a b c"  empty="" x=1.',
    "  energy=1 ",
    "",
]


@pytest.mark.parametrize("line", LINES)
def test_fast_path_taken_and_equal_to_general_grammar(line: str) -> None:
    assert _SIMPLE_LINE.fullmatch(line) is not None
    assert _same(parse_header(line), parse_header_general(line))


def test_values_are_typed_like_ase() -> None:
    info = parse_header(LINES[1])
    assert info["energy"] == -3 and type(info["energy"]) is int
    assert info["name"] == "bulk" and info["flag"] is True and info["other"] is False
    assert info["pbc"].dtype == bool and info["pbc"].tolist() == [False] * 3
    assert info["stress"].dtype == np.int64 and info["stress"].tolist() == [1, 2, 3, 4, 5, 6]
    lat = parse_header(LINES[0])["Lattice"]
    assert lat.dtype == np.float64 and lat[0] == 5.0
    assert parse_header(LINES[2])["x"] == 1.0 and type(parse_header(LINES[2])["x"]) is float


@pytest.mark.parametrize(
    "line",
    [
        "a=b=c",
        "flag energy=1",
        "arr={1,2,3} e=1",
        'q="a \\"quoted\\" word"',
        "k = 1",
        '"quoted key"=3',
        "s=[C@H](O)",
    ],
)
def test_other_lines_use_the_general_grammar(line: str) -> None:
    assert _SIMPLE_LINE.fullmatch(line) is None
    assert _same(parse_header(line), parse_header_general(line))


def test_random_lines_agree_or_fail_alike() -> None:
    rng = random.Random(0)
    atoms = [
        "a=1",
        'b="1 2 3"',
        'c="T F"',
        "d=x",
        "e=1.5",
        'f="x y"',
        'g=""',
        "h={1,2}",
        "i",
        "=",
        '"',
        'j="',
        'k=a"b',
        "l=[1 2]",
        "m=1=2",
        'n="1.0 2"',
        " ",
        "\t",
        'o="a\\"b"',
        "p=nan",
        "q=-inf",
        "r=1_0",
    ]
    for _ in range(3000):
        line = " ".join(rng.choice(atoms) for _ in range(rng.randint(0, 6)))
        try:
            want = parse_header_general(line)
        except HeaderError as exc:
            with pytest.raises(HeaderError, match="cannot parse"):
                parse_header(line)
            assert str(exc).startswith("cannot parse")
            continue
        assert _same(parse_header(line), want), line
