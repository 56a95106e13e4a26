"""Split an (extended) XYZ byte stream into frames without parsing them, with resynchronisation.

One rule set is shared by ``extxyz.partitions`` (which only needs frame offsets) and
``extxyz.read`` (which needs the lines), so a partition that seeks to a recorded byte offset sees
exactly the frames the scan counted. A frame is a count line, a comment line and ``count`` atom
lines. A count line is one token of ASCII digits with an optional leading ``+`` (``7``, ``+7``,
`` 007 ``); ``-3``, ``1e9``, ``1_0``, ``3.0`` and non-ASCII digits are not counts. Damage is
reported as a frame with an ``error`` rather than skipped:

* a count line that is not a count: the garbled region up to the next count line becomes one
  error frame (``parse:bad count line``);
* a count above ``MAX_ATOMS`` (e.g. 2**63): one error frame (``parse:atom count ... is above the
  limit``) covering the region up to the next count line, which starts the next frame;
* an atom block interrupted by a count line (the next frame's): error frame
  ``parse:too few atom lines``, and the next frame starts at that line;
* end of file inside a frame: error frame ``parse:truncated``.
Blank lines between frames are skipped.

Memory is bounded per frame, never by the file: atom lines are read ``_CHUNK`` at a time and the
read stops at the first count line, so a count far larger than the rest of the file reads no
further than the next frame, and a count above ``MAX_ATOMS`` reads no atom block at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import IO

MAX_ATOMS = 10_000_000
"""Largest atom count a frame may declare; a larger one is quarantined, not read."""

_CHUNK = 4096  # atom lines read at a time: the most read past a frame that ends early
_SHORT = 24  # inside an atom block a count line is at most this long; longer lines are atom lines
_DIGITS = len(str(MAX_ATOMS))  # a count with more digits is above MAX_ATOMS: never converted


@dataclass
class RawFrame:
    """One frame's position and raw lines (``comment``/``atoms`` are None when scanning only)."""

    index: int
    offset: int
    line_no: int
    n_atoms: int
    comment: bytes | None
    atoms: list[bytes] | None
    error: str | None = None


def _count(line: bytes) -> int | None:
    """The atom count if ``line`` is one ``[+]digits`` token (ASCII), else None.

    A count with more significant digits than ``MAX_ATOMS`` is returned as ``MAX_ATOMS + 1``
    without being converted (Python refuses to convert over 4300 digits; the value is absurd)."""
    token = line.strip()
    if token[:1] == b"+":
        token = token[1:]
    if not token.isdigit():  # bytes.isdigit: ASCII 0-9 only, False for b""
        return None
    digits = token.lstrip(b"0")
    return int(digits or b"0") if len(digits) <= _DIGITS else MAX_ATOMS + 1


def _shown(line: bytes) -> str:
    """A count line for a message: the token, shortened if it is very long."""
    token = line.strip()
    if len(token) <= 40:
        return token.decode("ascii")
    return f"{token[:20].decode('ascii')}...({len(token)} characters)"


class _Lines:
    """The lines of a binary file with push-back (lines read ahead and given back, in order)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.back: list[bytes] = []  # reverse order: pop() gives the next line

    def next(self) -> bytes:
        """The next line, b"" at end of file."""
        return self.back.pop() if self.back else self.fh.readline()

    def take(self, k: int) -> list[bytes]:
        """Up to ``k`` next lines (fewer only at end of file)."""
        if not self.back:
            return list(islice(self.fh, k))
        out = [self.back.pop() for _ in range(min(k, len(self.back)))]
        if len(out) < k:
            out += islice(self.fh, k - len(out))
        return out

    def push(self, lines: list[bytes]) -> None:
        """Give ``lines`` back: they are the next lines read."""
        self.back.extend(reversed(lines))


def _first_count(lines: list[bytes]) -> int | None:
    """Index of the first count line in an atom block, None if there is none."""
    if not lines or min(map(len, lines)) > _SHORT:  # atom lines are longer than count lines
        return None
    for k, line in enumerate(lines):
        if len(line) <= _SHORT and _count(line) is not None:
            return k
    return None


def _take_until_count(src: _Lines, k: int) -> tuple[list[bytes], bool]:
    """Up to ``k`` next lines, stopping before the first count line (given back with what follows it)."""
    chunk = src.take(k)
    cut = _first_count(chunk)
    if cut is None:
        return chunk, False
    src.push(chunk[cut:])
    del chunk[cut:]
    return chunk, True


def _atom_lines(src: _Lines, n: int, keep: bool) -> tuple[list[bytes], int, int, bool]:
    """Up to ``n`` atom lines, stopping before the first count line.

    Returns (the lines if ``keep`` else [], lines read, bytes read, whether a count line stopped
    the block). At most ``_CHUNK`` lines beyond the block are read, and they are given back."""
    if n <= _CHUNK:  # the usual frame: one read
        chunk, stopped = _take_until_count(src, n)
        return (chunk if keep else []), len(chunk), sum(map(len, chunk)), stopped
    kept: list[bytes] = []
    got = nbytes = 0
    while got < n:
        want = min(n - got, _CHUNK)
        chunk, stopped = _take_until_count(src, want)
        got += len(chunk)
        nbytes += sum(map(len, chunk))
        if keep:
            kept.extend(chunk)
        if stopped or len(chunk) < want:  # the next frame, or end of file
            return kept, got, nbytes, stopped
    return kept, got, nbytes, False


def _skip_to_count(src: _Lines) -> tuple[int, int]:
    """Skip lines up to (not including) the next count line or end of file: (bytes, lines) skipped."""
    nbytes = nlines = 0
    while True:
        line = src.next()
        if not line:
            return nbytes, nlines
        if _count(line) is not None:
            src.push([line])
            return nbytes, nlines
        nbytes += len(line)
        nlines += 1


def iter_frames(
    fh: IO[bytes], offset: int = 0, line_no: int = 1, index: int = 0, keep: bool = True
) -> Iterator[RawFrame]:
    """Frames from the current position of ``fh`` (which is at byte ``offset``, line ``line_no``)."""
    src = _Lines(fh)
    while True:
        line = src.next()
        if not line:
            return
        stripped = line.strip()
        if not stripped:
            offset += len(line)
            line_no += 1
            continue
        start, start_line = offset, line_no
        n = int(stripped) if len(stripped) <= _DIGITS and stripped.isdigit() else _count(line)  # fast path
        offset += len(line)
        line_no += 1
        if n is None or n > MAX_ATOMS:
            nbytes, nlines = _skip_to_count(src)
            offset += nbytes
            line_no += nlines
            where = f"at line {start_line} (byte {start})"
            error = (
                f"parse:bad count line {line[:40]!r} {where}"
                if n is None
                else f"parse:atom count {_shown(line)} {where} is above the limit of {MAX_ATOMS} atoms per frame"
            )
            yield RawFrame(index, start, start_line, 0, None, None, error)
            index += 1
            continue
        comment = src.next()
        if not comment:
            yield RawFrame(
                index,
                start,
                start_line,
                n,
                None,
                None,
                f"parse:truncated frame at line {start_line} (byte {start}): file ends before the comment line",
            )
            return
        offset += len(comment)
        line_no += 1
        atoms, got, nbytes, stopped = _atom_lines(src, n, keep)
        error = None
        if stopped:
            error = (
                f"parse:too few atom lines in frame at line {start_line} (byte {start}): "
                f"expected {n}, found {got} before the next count line"
            )
        elif got < n:
            error = (
                f"parse:truncated frame at line {start_line} (byte {start}): "
                f"expected {n} atom lines, file ends after {got}"
            )
        offset += nbytes
        line_no += got
        yield RawFrame(index, start, start_line, n, comment if keep else None, atoms if keep else None, error)
        index += 1
        if error is not None and not stopped:
            return


def scan_offsets(fh: IO[bytes]) -> list[tuple[int, int]]:
    """``(byte offset, line number)`` of every frame start (good or damaged), one cheap pass."""
    return [(f.offset, f.line_no) for f in iter_frames(fh, keep=False)]
