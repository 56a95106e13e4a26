"""argparse ``type=`` callables that reject a bad value while parsing (exit 2, one line).

``bounded(float, 0, strict=True)`` accepts finite numbers > 0; a word that is not a number gets
argparse's own ``invalid float value: 'abc'``. ``out_dir`` is the type of every ``--out`` that
names a folder (an existing file there is refused before any work, not met later as
``[Errno 17] File exists``); ``out_file`` of every ``--out`` that names one file (a folder
there is refused).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["bounded", "out_dir", "out_file"]

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


def out_dir(text: str) -> Path:
    """A ``--out`` folder: new, or an existing folder; an existing file there is refused."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder; name a new or existing folder")
    return path


def out_file(text: str) -> Path:
    """A ``--out`` file: an existing folder there is refused (whether its own folder exists is
    the command's runtime check, exit 1, like every other missing path)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; name the file to write, e.g. {path / 'out'}")
    return path
