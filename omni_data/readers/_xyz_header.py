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
_BOOLS = _TRUE | _FALSE


class HeaderError(ValueError):
    """A comment line that does not follow the extxyz key=value grammar."""


def _scalar(token: str) -> Any:
    if "." not in token:  # int() rejects any token with a dot: skip the attempt
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


def _items(tokens: list[str], dotted: bool) -> Any:
    """A list of tokens as an int/float/bool array when all of them agree, else ``None``.

    ``dotted``: some token holds a ``.``, so int() would fail on it and is not tried."""
    if not tokens:
        return None
    if tokens[0] in _BOOLS and all(t in _BOOLS for t in tokens):  # no boolean word is a number
        return np.array([t in _TRUE for t in tokens], dtype=bool)
    if not dotted:
        try:
            return np.array([int(t) for t in tokens], dtype=np.int64)
        except ValueError:
            pass
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        pass
    return None


def _value(raw: str) -> Any:
    if raw.startswith('"'):
        text = raw[1:-1]
        if "\\" in text:
            text = text.replace('\\"', '"').replace("\\\\", "\\")
        tokens = text.split()
        arr = _items(tokens, "." in text) if len(tokens) > 1 else None
        return arr if arr is not None else _scalar(text) if text and " " not in text else text
    if raw[0] in "[{":
        inner = raw[1:-1].replace(",", " ").split()
        arr = _items([t.strip("'\"") for t in inner], "." in raw)
        return arr if arr is not None else raw
    return _scalar(raw)


# Text values recur from frame to frame (the Properties string above all): the parsed result
# (str or bool, immutable) is reused. Numbers parse faster than a cache fills; arrays are built afresh.
_CACHE: dict[str, Any] = {}
_CACHEABLE = (str, bool)


def _cached_value(raw: str) -> Any:
    try:
        return _CACHE[raw]
    except KeyError:
        pass
    value = _value(raw)
    if type(value) in _CACHEABLE and len(_CACHE) < 4096:
        _CACHE[raw] = value
    return value


# The usual line -- word=value pairs, values bare (no quote, bracket, brace, backslash or "=")
# or double-quoted without escapes -- splits into the same pairs under this much cheaper pattern
# as under ``_PAIR``; any other line takes the general path.
_SIMPLE_PAIR = r"""\s*(\w+)=("[^"\\]*"|[^\s"=\[\]{}\\]+)(?=\s|$)"""
_SIMPLE_LINE = re.compile(f"(?:{_SIMPLE_PAIR})*\\s*")
_SIMPLE = re.compile(_SIMPLE_PAIR)


def parse_header(line: str) -> dict[str, Any]:
    """``key=value`` pairs of one comment line, in order; keys keep their case."""
    if _SIMPLE_LINE.fullmatch(line) is not None:
        return {key: _cached_value(raw) for key, raw in _SIMPLE.findall(line)}
    return parse_header_general(line)


def parse_header_general(line: str) -> dict[str, Any]:
    """``parse_header`` by the full grammar only (any line; the reference for the fast path).

    ``finditer`` tries each match where the previous one ended (as ``match(line, pos)`` would);
    a match that starts later means unparseable text was skipped, which is an error."""
    out: dict[str, Any] = {}
    pos = 0
    for m in _PAIR.finditer(line):
        if m.start() != pos:
            break
        key, raw = m.groups()
        if key[0] == '"':
            key = key[1:-1]
        out[key] = True if raw is None else _cached_value(raw)
        pos = m.end()
    if pos < len(line) and line[pos:].strip():
        raise HeaderError(f"cannot parse comment line at character {pos}: {line[pos : pos + 40]!r}")
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
