"""Parse one extended-XYZ atom block (the ``n`` lines after the comment line) into column arrays.

Why a module of its own: this is the reader's hot loop. The column layout implied by a
``Properties`` list is worked out once per distinct list (``_layout``) and reused for every frame
that declares it; a frame's lines are joined and split once, text columns are sliced out of the
token list, and all numeric columns are converted by one ``np.array(..., float64)`` call.

The ``species`` column (``S:1``) is returned as its list of byte tokens, not as a text array:
``numbers()`` maps those straight to atomic numbers with one dict look-up per atom, and only
when a token is not a known symbol does it build the text array and report the bad symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Props = list[tuple[str, str, int]]
_TRUE_WORDS = [b"T", b"True", b"true", b"1"]


@dataclass(frozen=True)
class _Layout:
    """Where each declared column sits in a row of tokens."""

    ncol: int
    text: tuple[tuple[str, str, int, int], ...]  # (name, kind, first token column, count), last first
    numeric: tuple[tuple[str, str, int, int], ...]  # (name, kind, first numeric column, count)
    width: int  # numeric columns per row


_LAYOUTS: dict[tuple[tuple[str, str, int], ...], _Layout] = {}


def _layout(props: Props) -> _Layout:
    key = tuple(props)
    found = _LAYOUTS.get(key)
    if found is not None:
        return found
    text, numeric, col, ncol = [], [], 0, 0
    for name, kind, count in props:
        if kind in ("S", "L"):
            text.append((name, kind, ncol, count))
        else:
            numeric.append((name, kind, col, count))
            col += count
        ncol += count
    layout = _Layout(ncol, tuple(reversed(text)), tuple(numeric), col)
    if len(_LAYOUTS) < 1024:
        _LAYOUTS[key] = layout
    return layout


def _tokens(lines: list[bytes], ncol: int, loose: bool) -> list[bytes]:
    """All tokens of the block, row-major, exactly ``ncol`` per line (``loose``: extra columns dropped)."""
    tokens = b" ".join(lines).split()
    if len(tokens) == len(lines) * ncol:
        return tokens
    rows: list[bytes] = []
    for k, line in enumerate(lines):
        t = line.split()
        if len(t) < ncol or (len(t) > ncol and not loose):
            raise ValueError(f"atom line {k + 1} has {len(t)} columns, Properties declare {ncol}")
        rows.extend(t[:ncol])
    return rows


def _text_column(name: str, kind: str, cols: list[list[bytes]]) -> Any:
    """An S/L column (``cols``: one token list per component); species ``S:1`` stays a token list."""
    try:
        if kind == "S":
            if name == "species" and len(cols) == 1:
                b" ".join(cols[0]).decode("utf-8")  # a space never completes a multi-byte character
                return cols[0]
            arr = np.array([[t.decode("utf-8") for t in c] for c in cols]).T
        else:
            arr = np.isin(np.array(cols, dtype=np.bytes_).T, _TRUE_WORDS)
    except UnicodeDecodeError:
        try:  # the first bad token's own error, as the per-token decode reports it
            [[t.decode("utf-8") for t in c] for c in cols]
        except UnicodeDecodeError as exc:
            raise ValueError(f"column {name!r} is not UTF-8 text: {exc}") from None
        raise
    return arr[:, 0] if len(cols) == 1 else arr


def atom_block(lines: list[bytes], props: Props, loose: bool) -> dict[str, Any]:
    """Column name -> array for one frame; ``loose`` allows extra trailing columns (no Properties given).

    ValueError (naming the line or column) when the block does not fit ``props``."""
    n = len(lines)
    layout = _layout(props)
    ncol = layout.ncol
    tokens = _tokens(lines, ncol, loose)
    out: dict[str, Any] = {}
    numeric = tokens
    if layout.text:
        numeric = list(tokens)
        width = ncol
        for name, kind, c0, count in layout.text:  # last column first, so earlier starts stay valid
            out[name] = _text_column(name, kind, [tokens[c0 + j :: ncol] for j in range(count)])
            for j in reversed(range(count)):  # drop the column from the row-major numeric list
                del numeric[c0 + j :: width]
                width -= 1
    try:
        values = np.array(numeric, dtype=np.float64).reshape(n, layout.width)
    except ValueError as exc:
        raise ValueError(f"non-numeric value in a numeric column: {exc}") from None
    for name, kind, col, count in layout.numeric:
        block = values[:, col : col + count]
        if kind == "I":
            if not np.array_equal(block, np.round(block)):
                raise ValueError(f"column {name!r} (I) holds non-integers")
            block = block.astype(np.int64)
        out[name] = block[:, 0] if count == 1 else block
    return out


_NUMBERS_CACHE: dict[tuple[str, ...], np.ndarray] = {}


def numbers(arrays: dict[str, Any], symbols: dict[bytes, int]) -> np.ndarray:
    """Atomic numbers from the ``Z``, ``numbers`` or ``species`` column (in that order of preference)."""
    if "Z" in arrays:
        return np.asarray(arrays["Z"], dtype=np.int64)
    if "numbers" in arrays:
        return np.asarray(arrays["numbers"], dtype=np.int64)
    species = arrays.get("species")
    if species is None:
        raise ValueError("no species, Z or numbers column")
    if type(species) is list:  # byte tokens from atom_block
        zs = list(map(symbols.get, species))
        if None not in zs:
            return np.array(zs, dtype=np.int64)
        species = np.array([t.decode("utf-8") for t in species])  # validated as UTF-8 by atom_block
    return _numbers_of_text(species, symbols)


def _numbers_of_text(species: np.ndarray, symbols: dict[bytes, int]) -> np.ndarray:
    key = tuple(species.tolist())
    cached = _NUMBERS_CACHE.get(key)
    if cached is not None:
        return cached.copy()
    uniq, inverse = np.unique(species, return_inverse=True)
    zs = np.empty(len(uniq), dtype=np.int64)
    for k, s in enumerate(uniq):
        z = symbols.get(str(s).encode())
        if z is None:
            raise ValueError(f"unknown element symbol {str(s)!r} at atom {int(np.flatnonzero(inverse == k)[0])}")
        zs[k] = z
    out = zs[inverse.reshape(-1)]
    if len(_NUMBERS_CACHE) < 4096:  # trajectories repeat one composition: map symbols once
        _NUMBERS_CACHE[key] = out
    return out.copy()
