"""Parse an extended-XYZ comment line: ``key=value`` pairs, quoted strings, arrays, ``Properties``.

Follows the extxyz specification (https://github.com/libAtoms/extxyz, and ASE's
``ase.io.extxyz.key_val_str_to_dict``): values may be bare tokens, ``"double quoted"`` strings
with ``\\"`` escapes, or ``{...}`` / ``[...]`` lists; a bare key without ``=`` means ``True``.
Quoted or bracketed lists of numbers become numpy arrays; ``T``/``F`` become booleans.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import numpy as np

_PAIR = re.compile(
    r"""\s*([^\s="]+|"(?:[^"\\]|\\.)*")        # key (bare or quoted)
        (?:\s*=\s*(
            "(?:[^"\\]|\\.)*"(?=\s|$)            # "quoted value"
          | \{[^}]*\}(?=\s|$)                    # {curly list}
          | \[[^\]]*\](?=\s|$)                   # [square list]
          | [^\s]+                              # bare value (may hold brackets: SMILES)
        ))?""",
    re.VERBOSE,
)
_TRUE = {"T", "True", "true", "TRUE"}
_FALSE = {"F", "False", "false", "FALSE"}


class HeaderError(ValueError):
    """A comment line that does not follow the extxyz key=value grammar."""


def _scalar(token: str) -> Any:
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        pass
    if token in _TRUE:
        return True
    if token in _FALSE:
        return False
    return token


def _items(tokens: list[str]) -> Any:
    """A list of tokens as an int/float/bool array when all of them agree, else ``None``."""
    if not tokens:
        return None
    try:
        return np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        pass
    if all(t in _TRUE or t in _FALSE for t in tokens):
        return np.array([t in _TRUE for t in tokens], dtype=bool)
    return None


def _value(raw: str) -> Any:
    if raw.startswith('"'):
        text = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        arr = _items(text.split()) if len(text.split()) > 1 else None
        return arr if arr is not None else _scalar(text) if text and " " not in text else text
    if raw[0] in "[{":
        inner = raw[1:-1].replace(",", " ").split()
        arr = _items([t.strip("'\"") for t in inner])
        return arr if arr is not None else raw
    return _scalar(raw)


def parse_header(line: str) -> dict[str, Any]:
    """``key=value`` pairs of one comment line, in order; keys keep their case."""
    out: dict[str, Any] = {}
    pos, end = 0, len(line)
    while pos < end:
        if line[pos:].strip() == "":
            break
        m = _PAIR.match(line, pos)
        if m is None or m.end() == pos:
            raise HeaderError(f"cannot parse comment line at character {pos}: {line[pos:pos + 40]!r}")
        key = m.group(1)
        if key.startswith('"'):
            key = key[1:-1]
        out[key] = True if m.group(2) is None else _value(m.group(2))
        pos = m.end()
    return out


@lru_cache(maxsize=256)
def parse_properties(spec: str) -> list[tuple[str, str, int]]:
    """``species:S:1:pos:R:3`` -> ``[("species", "S", 1), ("pos", "R", 3)]``."""
    fields = spec.split(":")
    if len(fields) % 3 != 0:
        raise HeaderError(f"Properties {spec!r} is not name:type:count triplets")
    out = []
    for i in range(0, len(fields), 3):
        name, kind, count = fields[i], fields[i + 1].upper(), fields[i + 2]
        if kind not in ("R", "I", "S", "L") or not count.isdigit() or int(count) < 1:
            raise HeaderError(f"Properties entry {name}:{kind}:{count} has a bad type or count")
        out.append((name, kind, int(count)))
    return out
