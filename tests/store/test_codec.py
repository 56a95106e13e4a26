"""LMDB value codec: msgpack + raw little-endian numpy buffers, no pickle."""
from __future__ import annotations

from dataclasses import fields

import msgpack
import numpy as np
import pytest

from omni_data.schema import Record
from omni_data.store.codec import CODEC_VERSION, decode_header, decode_record, encode_record
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
    # Version 2: a msgpack array; B holds positions, cell, forces, stress as raw <f8, then the
    # numbers as raw <i8 -- readable with numpy alone (layout in docs/schema.md).
    assert doc[0] == CODEC_VERSION == 2 and doc[1] == record.id and doc[8] == record.energy
    n = record.n_atoms
    assert doc[4] == n and doc[5] == 1 | 2 | 4 | 8  # positions, cell, forces, stress
    raw = doc[7]
    assert len(raw) == 8 * (3 * n + 9 + 3 * n + 6 + n)
    floats = np.frombuffer(raw, dtype="<f8", count=6 * n + 15)
    assert np.array_equal(floats[: 3 * n].reshape(n, 3), record.positions)
    assert np.array_equal(floats[3 * n: 3 * n + 9].reshape(3, 3), record.cell)
    assert np.array_equal(floats[3 * n + 9: 6 * n + 9].reshape(n, 3), record.forces)
    assert np.array_equal(np.frombuffer(raw, dtype="<i8", offset=8 * (6 * n + 15)), record.numbers)
    assert decode_header(encode_record(record))["n_atoms"] == n


def test_decoded_arrays_are_writable_and_independent():
    value = encode_record(emt_records(1)[0])
    a, b = decode_record(value), decode_record(value)
    before = b.positions[0, 0]
    a.positions[0, 0] = before + 1.0
    a.numbers[0] = 99
    assert b.positions[0, 0] == before and b.numbers[0] != 99 and a.numbers[0] == 99
    assert a.numbers.dtype == np.int64 and a.positions.flags.aligned and a.forces.flags.aligned
    assert sorted(vars(a)) == sorted(f.name for f in fields(Record))


def test_version_1_values_still_decode():
    # A version-1 value (a msgpack map, docs/schema.md), built field by field as codec 1 wrote it.
    record = emt_records(6, seed=2)[5]  # has tags and fixed
    n = record.n_atoms
    floats = [(1 << k, a) for k, a in enumerate((record.positions, record.cell, record.forces, record.stress,
                                                  record.magmoms)) if a is not None]
    v1 = msgpack.packb({
        "v": 1, "id": record.id, "ds": record.dataset, "tk": record.task, "n": n,
        "Z": record.numbers.astype("u1").tobytes(), "Zt": "|u1",
        "P": int(record.pbc[0]) | int(record.pbc[1]) << 1 | int(record.pbc[2]) << 2,
        "f": sum(bit for bit, _ in floats),
        "B": np.concatenate([a.reshape(-1) for _, a in floats]).astype("<f8").tobytes(),
        "E": record.energy, "EK": record.energy_kind, "q": record.charge, "s": record.spin, "w": record.weight,
        "sf": record.source_file, "si": record.source_index, "md": record.metadata or None,
        "X": record.fixed.tobytes(), "T": record.tags.astype("<i8").tobytes(),
    }, use_bin_type=True)
    assert record.fixed is not None and record.tags is not None and len(floats) >= 2
    assert_same_records([record], [decode_record(v1)])
    assert decode_header(v1)["n_atoms"] == n


def test_unknown_codec_version_is_an_error():
    doc = msgpack.unpackb(encode_record(bare_record()), raw=False)
    doc[0] = 99
    with pytest.raises(ValueError, match="codec version 99"):
        decode_record(msgpack.packb(doc, use_bin_type=True))
    with pytest.raises(ValueError, match="codec version 7"):
        decode_record(msgpack.packb({"v": 7}))


def test_truncated_buffer_is_an_error():
    doc = msgpack.unpackb(encode_record(emt_records(1)[0]), raw=False)
    doc[7] = doc[7][:-8]
    with pytest.raises((ValueError, TypeError)):
        decode_record(msgpack.packb(doc, use_bin_type=True))


def test_fast_record_path_equals_the_init_path(monkeypatch):
    import omni_data.store.codec as codec

    records = emt_records(8, seed=4)
    values = [encode_record(r) for r in records]
    fast = [decode_record(v) for v in values]
    monkeypatch.setattr(codec, "_FAST", False)
    monkeypatch.setattr(codec, "decode_c", None)  # the C decoder is checked in test_fastcodec.py
    slow = [decode_record(v) for v in values]
    assert_same_records(records, fast)
    assert_same_records(slow, fast)
    assert all(vars(a).keys() == vars(b).keys() for a, b in zip(fast, slow))


def test_python_fast_path_equals_the_init_path():
    records = emt_records(8, seed=4)
    for r in records:
        r.metadata = {"k": r.id}
    py = [codec_py(encode_record(r)) for r in records]
    assert_same_records(records, py)
    assert [r.metadata for r in py] == [{"k": r.id} for r in records]
    assert all(list(vars(a)) == [f.name for f in fields(Record)] for a in py)


def codec_py(value: bytes) -> Record:
    from omni_data.store.codec import decode_record_py

    return decode_record_py(value)


def test_strided_views_encode_like_contiguous_copies():
    """Readers hand over column slices of one parsed block (non-contiguous views)."""
    rec = emt_records(1)[0]
    block = np.concatenate([rec.positions, rec.forces], axis=1)
    view = Record(**{f.name: getattr(rec, f.name) for f in fields(Record)})
    view.positions, view.forces = block[:, :3], block[:, 3:]
    assert not view.positions.flags.c_contiguous
    assert encode_record(view) == encode_record(rec)
    assert_same_records([decode_record(encode_record(view))], [rec])


def test_ci_builds_the_c_decoder():
    """CI sets OMNI_REQUIRE_FASTCODEC=1: a broken build of ``_fastcodec.c`` must fail there
    instead of falling back to the pure-Python decoder unnoticed."""
    import os

    import omni_data.store.codec as codec

    if os.environ.get("OMNI_REQUIRE_FASTCODEC") != "1":
        pytest.skip("OMNI_REQUIRE_FASTCODEC is not set (only CI requires the C decoder)")
    assert codec.ACCELERATED, "omni_data/store/_fastcodec.c was not built (see the pip install output)"
