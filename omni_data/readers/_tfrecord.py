"""Pure-Python TFRecord reading and ``tf.train.Example`` decoding (no TensorFlow, no protobuf).

TFRecord framing (tensorflow.org/tutorials/load_data/tfrecord, "TFRecords format details"): each
record is ``uint64 length | uint32 masked_crc32c(length) | data[length] | uint32
masked_crc32c(data)``, little-endian, with ``masked_crc = ((crc >> 15) | (crc << 17)) +
0xa282ead8``. ``data`` is a serialized ``tf.train.Example``: ``Example{Features features=1}``,
``Features{map<string, Feature> feature=1}`` (map entries ``{string key=1; Feature value=2}``),
``Feature{oneof BytesList bytes_list=1 | FloatList float_list=2 | Int64List int64_list=3}``, each
list ``repeated value=1`` (floats and ints packed or not).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

MASK_DELTA = 0xA282EAD8


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


try:  # optional accelerator (PyPI ``crc32c``); the table loop below is the fallback
    from crc32c import crc32c as _fast_crc32c
except ImportError:
    _fast_crc32c = None


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli); uses the ``crc32c`` package when installed, else a table loop."""
    if _fast_crc32c is not None:
        return int(_fast_crc32c(data))
    crc = 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


class TFRecordError(ValueError):
    """A corrupt or truncated TFRecord; the message names the file and byte offset."""


MAX_RECORD_BYTES = 1 << 30
"""A longer record is a damaged (or hostile) length field: reading it would allocate that much."""


def _length(header: bytes, name: str, pos: int) -> int:
    """The record length of a 12-byte header, its CRC checked and its size plausible."""
    length, crc = struct.unpack("<QI", header)
    if masked_crc(header[:8]) != crc:
        raise TFRecordError(f"{name}: bad length CRC at byte {pos}")
    if length > MAX_RECORD_BYTES:
        raise TFRecordError(f"{name}: implausible record length {length} at byte {pos} (over {MAX_RECORD_BYTES})")
    return length


def record_offsets(fh: IO[bytes], name: str) -> list[int]:
    """Byte offset of every record, reading only the 12-byte headers (CRC of the length checked)."""
    offsets: list[int] = []
    pos = 0
    while True:
        header = fh.read(12)
        if not header:
            return offsets
        if len(header) < 12:
            raise TFRecordError(f"{name}: truncated record header at byte {pos}")
        length = _length(header, name, pos)
        offsets.append(pos)
        pos += 12 + length + 4
        fh.seek(pos)


def read_records(
    fh: IO[bytes], name: str, offset: int, count: int, verify: bool = True
) -> Iterator[bytes | TFRecordError]:
    """Up to ``count`` record payloads from byte ``offset`` (fewer at a clean end of file); data
    CRCs checked when ``verify``. A record whose data CRC is wrong comes out as a ``TFRecordError``
    (its length is intact, so the next record is still found); damaged framing raises one."""
    fh.seek(offset)
    pos = offset
    for _ in range(count):
        header = fh.read(12)
        if not header:
            return  # clean end of file
        if len(header) < 12:
            raise TFRecordError(f"{name}: truncated record header at byte {pos}")
        length = _length(header, name, pos)
        data = fh.read(length)
        footer = fh.read(4)
        if len(data) < length or len(footer) < 4:
            raise TFRecordError(f"{name}: truncated record at byte {pos}")
        if verify and masked_crc(data) != struct.unpack("<I", footer)[0]:
            yield TFRecordError(f"{name}: bad data CRC in record at byte {pos}")
        else:
            yield data
        pos += 16 + length


# --------------------------------------------------------------------------- protobuf
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise TFRecordError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise TFRecordError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message; value is int (varint/fixed) or bytes."""
    pos, n = 0, len(buf)
    while pos < n:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise TFRecordError(f"unsupported protobuf wire type {wire}")
        if pos > n:
            raise TFRecordError("truncated protobuf field")
        yield number, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _feature(buf: bytes) -> np.ndarray | list[bytes]:
    for kind, _wire, body in _fields(buf):
        if kind == 1:  # BytesList
            return [bytes(v) for num, w, v in _fields(body) if num == 1]
        if kind == 2:  # FloatList: packed (wire 2) or one fixed32 per value (wire 5)
            chunks = [v for num, w, v in _fields(body) if num == 1]
            return np.frombuffer(b"".join(chunks), dtype="<f4").astype(np.float32)
        if kind == 3:  # Int64List: packed varints (wire 2) or one varint per value (wire 0)
            out: list[int] = []
            for num, w, v in _fields(body):
                if num != 1:
                    continue
                if w == 0:
                    out.append(_signed64(v))
                else:
                    p = 0
                    while p < len(v):
                        x, p = _varint(v, p)
                        out.append(_signed64(x))
            return np.asarray(out, dtype=np.int64)
    return []  # a Feature with no list set


def parse_example(data: bytes) -> dict[str, np.ndarray | list[bytes]]:
    """Decode a serialized ``tf.train.Example`` into {feature name: values}."""
    out: dict[str, np.ndarray | list[bytes]] = {}
    for num, _w, features in _fields(data):
        if num != 1:
            continue
        for fnum, _fw, entry in _fields(features):
            if fnum != 1:
                continue
            key, value = "", b""
            for enum, _ew, v in _fields(entry):
                if enum == 1:
                    key = bytes(v).decode("utf-8")
                elif enum == 2:
                    value = v
            out[key] = _feature(value)
    return out
