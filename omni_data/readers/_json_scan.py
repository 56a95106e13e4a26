"""Byte offsets of the entries of a huge top-level JSON object, found without parsing it.

Why: MPtrj is one 12 GB JSON object ``{mp_id: {frame_id: {...}}}``; no JSON parser (json, ijson)
reports byte positions, and parsing it to find partition boundaries would cost a full parse per
run. ``scan_object`` reads the file in fixed-size chunks with numpy, tracks string state (quotes,
backslash escapes) and bracket depth, and returns the offset of every depth-1 key and how many
depth-2 keys (frames) each entry holds. A partition's reader then cuts its byte range at the same
places (``split_entries``/``split_values``) and decodes each entry alone (``decode_entry``/
``decode_value``), so memory is bounded by the range and a damaged entry fails only itself.
"""

from __future__ import annotations

import io
import json
import lzma
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from omni_data.readers import ReaderError
from omni_data.readers._common import open_binary

CHUNK = 1 << 25  # 32 MiB
_CLASS = np.zeros(256, dtype=np.uint8)  # 1: quote, 2: opening bracket, 3: closing bracket
_CLASS[ord('"')] = 1
_CLASS[ord("{")] = _CLASS[ord("[")] = 2
_CLASS[ord("}")] = _CLASS[ord("]")] = 3


@dataclass
class ObjectIndex:
    """Where each top-level entry's key starts, its number of child keys, and the closing brace."""

    offsets: list[int]
    children: list[int]
    end: int


def _real_quotes(arr: np.ndarray, quotes: np.ndarray, carry_bs: int) -> np.ndarray:
    """Drop quotes escaped by an odd run of backslashes (runs may start in the previous chunk)."""
    if quotes.size == 0:
        return quotes
    keep = np.ones(quotes.size, dtype=bool)
    prev_is_bs = np.zeros(quotes.size, dtype=bool)
    inner = quotes > 0
    prev_is_bs[inner] = arr[quotes[inner] - 1] == 92
    if quotes[0] == 0 and carry_bs:
        prev_is_bs[0] = True
    for k in np.flatnonzero(prev_is_bs):
        p, run = int(quotes[k]) - 1, 0
        while p >= 0 and arr[p] == 92:
            run, p = run + 1, p - 1
        if p < 0:
            run += carry_bs
        keep[k] = run % 2 == 0
    return quotes[keep]


@dataclass
class _Chunk:
    base: int  # file offset of the chunk
    quotes: np.ndarray  # opening quotes (chunk positions) outside strings
    q_depth: np.ndarray  # bracket depth at each opening quote
    struct: np.ndarray  # brackets outside strings (chunk positions)
    steps: np.ndarray  # +1 for an opening bracket, -1 for a closing one
    depth_after: np.ndarray  # depth after each bracket
    data: bytes  # the chunk's bytes


def _chunks(fh: IO[bytes], name: str, chunk: int) -> Iterator[tuple[int, _Chunk]]:
    """Yield (first non-blank byte, chunk) with string state and depth carried across chunks."""
    in_string, depth, carry_bs, base = False, 0, 0, 0
    first_byte = -1
    while True:
        data = fh.read(chunk)
        if not data:
            if first_byte < 0:
                raise ValueError(f"{name}: empty JSON file")
            return
        arr = np.frombuffer(data, dtype=np.uint8)
        if first_byte < 0:
            stripped = data.lstrip(b" \t\r\n")
            if not stripped:
                base += len(data)
                continue
            first_byte = stripped[0]
        cls = _CLASS[arr]  # one gather pass; then work only on the special bytes
        special = np.flatnonzero(cls)
        kinds = cls[special]
        quotes = _real_quotes(arr, special[kinds == 1], carry_bs)
        is_bracket = kinds > 1
        struct = special[is_bracket]
        steps = np.where(kinds[is_bracket] == 2, 1, -1).astype(np.int64)
        # a bracket is inside a string when an odd number of real quotes precede it
        outside = (np.searchsorted(quotes, struct) + int(in_string)) % 2 == 0
        struct, steps = struct[outside], steps[outside]
        depth_after = depth + np.cumsum(steps)
        q_index = np.arange(quotes.size) + int(in_string)
        opening = quotes[q_index % 2 == 0]
        k = np.searchsorted(struct, opening)  # brackets before each opening quote
        if struct.size:
            q_depth = np.where(k > 0, depth_after[np.maximum(k - 1, 0)], depth)
        else:
            q_depth = np.full(opening.size, depth)
        yield first_byte, _Chunk(base, opening, q_depth, struct, steps, depth_after, data)
        in_string = bool((quotes.size + int(in_string)) % 2)
        depth = int(depth_after[-1]) if struct.size else depth
        tail = len(data) - len(data.rstrip(b"\\"))
        carry_bs = tail + carry_bs if tail == len(data) else tail
        base += len(data)


def _nothing_after(fh: IO[bytes], rest: bytes, end: int, name: str, chunk: int = 1 << 20) -> None:
    """ValueError when anything but whitespace follows the top-level value's closing bracket at
    byte ``end`` (``rest``: the rest of its chunk): data there would be silently dropped."""
    while True:
        if rest.strip(b" \t\r\n"):
            raise ValueError(
                f"{name}: data after the end of the top-level JSON value at byte {end} (a stray closing bracket?)"
            )
        rest = fh.read(chunk)
        if not rest:
            return


def scan_object(fh: IO[bytes], name: str, chunk: int = CHUNK) -> ObjectIndex:
    """Index the top-level object in ``fh``: offsets of its keys, and the number of keys in each
    value (frames per mp-id); ValueError naming ``name`` if it is not one object."""
    offsets: list[int] = []
    children: list[int] = []
    end = -1
    for first, c in _chunks(fh, name, chunk):
        if first != ord("{"):
            raise ValueError(f"{name}: top level is not a JSON object")
        closes = c.struct[c.depth_after == 0]
        sel = (c.q_depth == 1) | (c.q_depth == 2)
        if closes.size:  # nothing after the object's closing brace belongs to it
            sel &= c.quotes < closes[0]
        for pos, d in zip(c.quotes[sel].tolist(), c.q_depth[sel].tolist()):
            if d == 1:
                offsets.append(c.base + pos)
                children.append(0)
            elif children:
                children[-1] += 1
        if closes.size:
            end = c.base + int(closes[0])
            _nothing_after(fh, c.data[int(closes[0]) + 1 :], end, name)
            break
    if end < 0:
        raise ValueError(f"{name}: JSON object is truncated (no closing brace)")
    return ObjectIndex(offsets, children, end)


def scan_values(fh: IO[bytes], name: str, chunk: int = CHUNK) -> ObjectIndex:
    """Index a JSON array of objects (``[{...}, ...]``) or JSON lines (one object per line): the
    offset of each object's ``{`` and where the last one ends (the array's ``]``, or end of data)."""
    offsets: list[int] = []
    end, depth, kind = -1, 0, 0
    for first, c in _chunks(fh, name, chunk):
        kind = first
        if first not in (ord("["), ord("{")):
            raise ValueError(f"{name}: neither a JSON array nor JSON lines")
        level = 2 if first == ord("[") else 1
        opens = c.struct[(c.steps == 1) & (c.depth_after == level)]
        closes = c.struct[c.depth_after == 0]
        if level == 2 and closes.size:  # nothing after the array's closing bracket belongs to it
            opens = opens[opens < closes[0]]
        offsets.extend((c.base + opens).tolist())
        if c.struct.size:
            depth = int(c.depth_after[-1])
        if closes.size:
            end = c.base + int(closes[0 if level == 2 else -1]) + (0 if level == 2 else 1)
            if level == 2:
                _nothing_after(fh, c.data[int(closes[0]) + 1 :], end, name)
                depth = 0
                break
    if depth != 0 or (kind == ord("[") and end < 0):
        raise ValueError(f"{name}: JSON data is truncated (unclosed bracket)")
    return ObjectIndex(offsets, [1] * len(offsets), end)


# --- per-entry decoding of one partition's byte range: a damaged entry fails alone ---------------
WS = " \t\r\n"


def read_range(path: str | Path, offset: int, end: int) -> bytes:
    """Bytes ``offset..end`` of ``path`` (compressed files decompress forward to ``offset``);
    ReaderError naming the file when it cannot be read or decompressed."""
    try:
        with open_binary(path) as fh:
            fh.seek(offset)
            return fh.read(end - offset)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ReaderError(f"{path}: cannot read bytes {offset}-{end} ({exc})") from exc


def split_values(raw: bytes, name: str) -> list[bytes]:
    """Each object of ``raw`` (a partition's range of a JSON array or of JSON lines) as its own
    byte slice, cut where the partition scan cut; ValueError when the brackets do not balance."""
    index = scan_values(io.BytesIO(raw), name)
    bounds = index.offsets[1:] + [len(raw)]
    return [raw[a:b] for a, b in zip(index.offsets, bounds)]


def split_entries(raw: bytes, name: str) -> list[tuple[bytes, int]]:
    """Each ``"key": value`` of ``raw`` (a partition's range of a top-level object) as its own byte
    slice, with the number of keys inside its value; ValueError when the brackets do not balance."""
    index = scan_object(io.BytesIO(b"{" + raw + b"}"), name)
    starts = [o - 1 for o in index.offsets]
    return [(raw[a:b], n) for a, b, n in zip(starts, starts[1:] + [len(raw)], index.children)]


def _rest_is_blank(text: str, pos: int) -> None:
    rest = text[pos:].strip(WS + ",")
    if rest:
        raise ValueError(f"unexpected text after the entry: {rest[:40]!r}")


def decode_value(chunk: bytes) -> Any:
    """The one JSON value in ``chunk`` (separators around it allowed); ValueError otherwise, also
    for bytes that are not UTF-8."""
    text = chunk.decode("utf-8")
    start = len(text) - len(text.lstrip(WS + ","))
    value, pos = json.JSONDecoder().raw_decode(text, start)
    _rest_is_blank(text, pos)
    return value


def decode_entry(chunk: bytes) -> tuple[str, Any]:
    """The one ``"key": value`` in ``chunk``; ValueError if it is not exactly that."""
    text = chunk.decode("utf-8")
    decoder = json.JSONDecoder()
    key, pos = decoder.raw_decode(text, len(text) - len(text.lstrip(WS)))
    if not isinstance(key, str):
        raise ValueError(f"key {key!r} is not a string")
    rest = text[pos:].lstrip(WS)
    if not rest.startswith(":"):
        raise ValueError(f"expected ':' after key {key!r}")
    value, pos = decoder.raw_decode(text, len(text) - len(rest[1:].lstrip(WS)))
    _rest_is_blank(text, pos)
    return key, value


def key_of(chunk: bytes) -> str:
    """The key at the start of an entry that failed to decode, or '' if even that is unreadable."""
    try:
        text = chunk.decode("utf-8", "replace")
        key, _ = json.JSONDecoder().raw_decode(text, len(text) - len(text.lstrip(WS)))
    except ValueError:
        return ""
    return key if isinstance(key, str) else ""
