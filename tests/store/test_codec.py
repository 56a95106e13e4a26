"""LMDB value codec 3: crc32c + (lz4) msgpack + raw little-endian numpy buffers, no pickle."""

from __future__ import annotations

from dataclasses import fields

import msgpack
import numpy as np
import pytest
from crc32c import crc32c

from omni_data.schema import Record
from omni_data.store.codec import LZ4, RAW, CorruptValue, check_value, decode_header, decode_record, encode_record
from omni_data.store.testing import assert_same_records, bare_record, emt_records


def test_round_trip_every_field():
    records = emt_records(16, seed=5)
    assert_same_records(records, [decode_record(encode_record(r)) for r in records])
    strings: dict[str, int] = {}
    values = [encode_record(r, row, strings) for row, r in enumerate(records)]
    table = list(strings)
    assert set(table) >= {records[0].dataset, records[0].task}
    assert_same_records(records, [decode_record(v, row, table) for row, v in enumerate(values)])


def test_missing_labels_stay_none():
    back = decode_record(encode_record(bare_record()))
    for name in ("cell", "energy", "forces", "stress", "magmoms", "charge", "spin", "fixed", "tags"):
        assert getattr(back, name) is None, name
    assert back.pbc.tolist() == [False, False, False]


def test_value_layout_is_crc_kind_and_msgpack_with_little_endian_buffers():
    record = emt_records(1)[0]
    value = encode_record(record, row=7, compress=False)
    assert int.from_bytes(value[:4], "little") == crc32c(value[4:]) and value[4] == RAW
    doc = msgpack.unpackb(value[5:], raw=False)
    assert doc[0] == 7 and doc[1] == record.id and doc[7] == record.energy
    n = record.n_atoms
    assert doc[4] == n and doc[5] == 1 | 2 | 4 | 8  # positions, cell, forces, stress
    raw = doc[15]
    assert len(raw) == 8 * (3 * n + 9 + 3 * n + 6 + n)
    floats = np.frombuffer(raw, dtype="<f8", count=6 * n + 15)
    assert np.array_equal(floats[: 3 * n].reshape(n, 3), record.positions)
    assert np.array_equal(floats[3 * n : 3 * n + 9].reshape(3, 3), record.cell)
    assert np.array_equal(floats[3 * n + 9 : 6 * n + 9].reshape(n, 3), record.forces)
    assert np.array_equal(np.frombuffer(raw, dtype="<i8", offset=8 * (6 * n + 15)), record.numbers)
    assert decode_header(value)["n_atoms"] == n


def test_compression_only_where_it_pays():
    big = emt_records(1, seed=1)[0]
    big.numbers = np.full(len(big.numbers), 29)  # int64 numbers: mostly zero bytes, they compress
    value = encode_record(big)
    assert value[4] == LZ4 and len(value) < len(encode_record(big, compress=False))
    assert_same_records([big], [decode_record(value)])
    small = bare_record()
    assert encode_record(small)[4] in (RAW, LZ4)


def test_decoded_arrays_are_writable_and_independent():
    value = encode_record(emt_records(1)[0])
    a, b = decode_record(value), decode_record(value)
    before = b.positions[0, 0]
    a.positions[0, 0] = before + 1.0
    a.numbers[0] = 99
    assert b.positions[0, 0] == before and b.numbers[0] != 99 and a.numbers[0] == 99
    assert a.numbers.dtype == np.int64 and a.positions.flags.aligned and a.forces.flags.aligned
    assert sorted(vars(a)) == sorted(f.name for f in fields(Record))


def test_every_flipped_byte_is_an_error_never_another_record():
    record = emt_records(1, seed=9)[0]
    record.metadata = {"k": 1}
    for compress in (False, True):
        value = encode_record(record, row=3, compress=compress)
        for at in range(len(value)):
            for bit in (0x01, 0x80):
                damaged = bytearray(value)
                damaged[at] ^= bit
                with pytest.raises(CorruptValue):
                    decode_record(bytes(damaged), 3)


def test_truncated_value_and_wrong_row_are_errors():
    value = encode_record(emt_records(1)[0], row=2)
    for cut in (0, 3, 5, len(value) - 1):
        with pytest.raises(CorruptValue):
            decode_record(value[:cut], 2)
    with pytest.raises(CorruptValue, match="belongs to row 2"):
        decode_record(value, 5)


def test_unknown_kind_is_an_error():
    value = bytearray(encode_record(bare_record()))
    value[4] = 0x7F
    value[:4] = crc32c(bytes(value[4:])).to_bytes(4, "little")
    with pytest.raises(CorruptValue, match="kind 0x7f"):
        check_value(bytes(value))


def test_metadata_stays_packed_until_read():
    record = emt_records(1)[0]
    record.metadata = {"mulliken": [0.1, -0.1], "note": "x"}
    back = decode_record(encode_record(record))
    assert type(vars(back)["metadata"]).__name__ == "PackedMetadata"
    assert back.metadata == record.metadata


def test_strided_views_encode_like_contiguous_copies():
    """Readers hand over column slices of one parsed block (non-contiguous views)."""
    rec = emt_records(1)[0]
    block = np.concatenate([rec.positions, rec.forces], axis=1)
    view = Record(**{f.name: getattr(rec, f.name) for f in fields(Record)})
    view.positions, view.forces = block[:, :3], block[:, 3:]
    assert not view.positions.flags.c_contiguous
    assert encode_record(view) == encode_record(rec)
    assert_same_records([decode_record(encode_record(view))], [rec])


def test_metadata_with_an_integer_beyond_64_bits_round_trips():
    record = emt_records(1)[0]
    record.metadata = {"big": 10**30, "neg": -(2**70), "x": [1, "a"]}
    back = decode_record(encode_record(record))
    assert back.metadata == record.metadata
