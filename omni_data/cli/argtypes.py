"""argparse ``type=`` callables that reject an out-of-range number while parsing (exit 2).

``bounded(float, 0, strict=True)`` accepts finite numbers > 0; a word that is not a number gets
argparse's own ``invalid float value: 'abc'``.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, TypeVar

N = TypeVar("N", int, float)


def bounded(kind: Callable[[str], N], minimum: N, strict: bool = False) -> Callable[[str], N]:
    """A parser of ``kind`` numbers ``>= minimum`` (``> minimum`` when ``strict``), finite."""

    def parse(text: str) -> N:
        value = kind(text)  # ValueError: argparse says "invalid <kind> value"
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be a number {'>' if strict else '>='} {minimum}, got {text!r}")
        return value

    parse.__name__ = getattr(kind, "__name__", "number")
    return parse
