"""LMDB value codec: msgpack + raw little-endian numpy buffers, no pickle."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest

from omni_data.store.codec import decode_header, decode_record, encode_record
from omni_data.store.testing import assert_same_records, bare_record, emt_records


def test_round_trip_every_field():
    records = emt_records(16, seed=5)
    assert_same_records(records, [decode_record(encode_record(r)) for r in records])


def test_missing_labels_stay_none():
    back = decode_record(encode_record(bare_record()))
    for name in ("cell", "energy", "forces", "stress", "magmoms", "charge", "spin", "fixed", "tags"):
        assert getattr(back, name) is None, name
    assert back.pbc.tolist() == [False, False, False]


def test_value_is_plain_msgpack_with_little_endian_buffers():
    record = emt_records(1)[0]
    doc = msgpack.unpackb(encode_record(record), raw=False)
    # Positions are the raw float64 little-endian bytes, readable without this package.
    floats = np.frombuffer(doc["B"], dtype="<f8")
    n = record.n_atoms
    assert np.array_equal(floats[: 3 * n].reshape(n, 3), record.positions)
    assert doc["f"] & 1 and np.array_equal(np.frombuffer(doc["Z"], "u1"), record.numbers)
    assert doc["E"] == record.energy and doc["id"] == record.id
    assert decode_header(encode_record(record))["n_atoms"] == record.n_atoms


def test_unknown_codec_version_is_an_error():
    doc = msgpack.unpackb(encode_record(bare_record()), raw=False)
    doc["v"] = 99
    with pytest.raises(ValueError, match="codec version 99"):
        decode_record(msgpack.packb(doc, use_bin_type=True))
