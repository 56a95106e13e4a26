"""Split an (extended) XYZ byte stream into frames without parsing them, with resynchronisation.

One rule set is shared by ``extxyz.partitions`` (which only needs frame offsets) and
``extxyz.read`` (which needs the lines), so a partition that seeks to a recorded byte offset sees
exactly the frames the scan counted. A frame is a count line (one integer), a comment line and
``count`` atom lines. Damage is reported as a frame with an ``error`` rather than skipped:

* a count line that is not one non-negative integer: the garbled region up to the next line that
  is a single integer becomes one error frame (``parse:bad count line``);
* an atom block interrupted by a single-integer line (the next frame's count line): error frame
  ``parse:too few atom lines``, and the next frame starts at that line;
* end of file inside a frame: error frame ``parse:truncated``.
Blank lines between frames are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import IO, Iterator


@dataclass
class RawFrame:
    """One frame's position and raw lines (``lines`` is None when scanning only)."""

    index: int
    offset: int
    line_no: int
    n_atoms: int
    comment: bytes | None
    atoms: list[bytes] | None
    error: str | None = None


_SHORT = 24  # a count line is at most this long (digits + padding); longer lines are atom lines


def _count(line: bytes) -> int | None:
    """The atom count if ``line`` is exactly one non-negative integer token, else None."""
    tokens = line.split()
    if len(tokens) != 1:
        return None
    try:
        n = int(tokens[0])
    except ValueError:
        return None
    return n if n >= 0 else None


def iter_frames(
    fh: IO[bytes], offset: int = 0, line_no: int = 1, index: int = 0, keep: bool = True
) -> Iterator[RawFrame]:
    """Frames from the current position of ``fh`` (which is at byte ``offset``, line ``line_no``).

    Atom blocks are taken ``n`` lines at a time (``islice``); only when a block holds a line short
    enough to be a count line is it checked line by line, and lines read past the damage are
    pushed back so the next frame starts where it really starts."""
    pushback: list[bytes] = []  # lines read ahead, in reverse order (pop() gives the next one)

    def readline() -> bytes:
        return pushback.pop() if pushback else fh.readline()

    while True:
        line = pushback.pop() if pushback else fh.readline()
        if not line:
            return
        stripped = line.strip()
        if not stripped:
            offset += len(line)
            line_no += 1
            continue
        start, start_line = offset, line_no
        n = int(stripped) if stripped.isdigit() else _count(line)  # ASCII digits only: one integer >= 0
        offset += len(line)
        line_no += 1
        if n is None:
            while True:
                nxt = readline()
                if not nxt or _count(nxt) is not None:
                    if nxt:
                        pushback.append(nxt)
                    break
                offset += len(nxt)
                line_no += 1
            yield RawFrame(index, start, start_line, 0, None, None,
                           f"parse:bad count line {line[:40]!r} at line {start_line} (byte {start})")
            index += 1
            continue
        comment = pushback.pop() if pushback else fh.readline()
        if not comment:
            yield RawFrame(index, start, start_line, n, None, None,
                           f"parse:truncated frame at line {start_line} (byte {start}): file ends before the comment line")
            return
        offset += len(comment)
        line_no += 1
        if pushback:
            atoms = [pushback.pop() for _ in range(min(n, len(pushback)))]
            if len(atoms) < n:
                atoms += islice(fh, n - len(atoms))
        else:
            atoms = list(islice(fh, n))
        error = None
        if atoms and min(map(len, atoms)) <= _SHORT:  # atom lines are longer than count lines
            for k, atom in enumerate(atoms):
                if len(atom) <= _SHORT and _count(atom) is not None:
                    pushback.extend(reversed(atoms[k:]))
                    atoms = atoms[:k]
                    error = (f"parse:too few atom lines in frame at line {start_line} (byte {start}): "
                             f"expected {n}, found {k} before the next count line")
                    break
        if error is None and len(atoms) < n:
            error = (f"parse:truncated frame at line {start_line} (byte {start}): "
                     f"expected {n} atom lines, file ends after {len(atoms)}")
        offset += sum(map(len, atoms))
        line_no += len(atoms)
        yield RawFrame(index, start, start_line, n, comment if keep else None, atoms if keep else None, error)
        index += 1
        if error is not None and not pushback:
            return


def scan_offsets(fh: IO[bytes]) -> list[tuple[int, int]]:
    """``(byte offset, line number)`` of every frame start (good or damaged), one cheap pass."""
    return [(f.offset, f.line_no) for f in iter_frames(fh, keep=False)]
