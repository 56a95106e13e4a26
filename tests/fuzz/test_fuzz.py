"""Property-based fuzzing (hypothesis): the record codec round-trips exactly, and the extxyz reader
never crashes and never loses a frame, whatever bytes it is fed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omni_data.readers import ReadOptions, get_reader
from omni_data.schema import Record, Rejected
from omni_data.store.codec import decode_record, encode_record
from omni_data.store.testing import record_differences

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e6, max_value=1e6)
TEXT = st.text(min_size=1, max_size=30)


@st.composite
def records(draw) -> Record:
    n = draw(st.integers(1, 12))
    vec = lambda shape: draw(hnp.arrays(np.float64, shape, elements=FINITE))  # noqa: E731
    maybe = lambda make: draw(st.one_of(st.none(), st.just(None).map(lambda _: make())))  # noqa: E731
    periodic = draw(st.booleans())
    meta = draw(
        st.dictionaries(st.text(max_size=8), st.one_of(st.integers(-5, 5), st.text(max_size=8), FINITE), max_size=3)
    )
    return Record(
        numbers=draw(hnp.arrays(np.int64, (n,), elements=st.integers(1, 118))),
        positions=vec((n, 3)),
        id=draw(TEXT),
        dataset=draw(TEXT),
        task=draw(TEXT),
        cell=vec((3, 3)) if periodic else None,
        pbc=np.array([periodic] * 3),
        energy=draw(st.one_of(st.none(), FINITE)),
        energy_kind=draw(st.sampled_from(["total", "free", "referenced", "corrected"])),
        forces=maybe(lambda: vec((n, 3))),
        stress=maybe(lambda: vec((6,))),
        magmoms=maybe(lambda: vec((n,))),
        charge=draw(st.one_of(st.none(), st.integers(-3, 3).map(float))),
        spin=draw(st.one_of(st.none(), st.integers(1, 7))),
        fixed=maybe(lambda: draw(hnp.arrays(bool, (n,)))),
        tags=maybe(lambda: draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, 2)))),
        weight=draw(st.floats(0, 10)),
        source_file=draw(st.text(max_size=20)),
        source_index=draw(st.integers(-1, 10**9)),
        metadata=meta,
    ).normalized()


@settings(max_examples=200, deadline=None)
@given(records())
def test_codec_round_trip_is_exact(record):
    back = decode_record(encode_record(record))
    assert record_differences(record, back) == []
    assert back.metadata == record.metadata


GOOD = (
    b'2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3 energy=-7.1 pbc="T T T"\n'
    b"Cu 0 0 0 0.1 0 0\nCu 1.8 1.8 0 -0.1 0 0\n"
)


def _read_all(path: Path) -> list[Record | Rejected]:
    reader = get_reader("extxyz")
    opts = ReadOptions(dataset="fuzz", task="fuzz")
    return [item for part in reader.partitions(path, 3) for item in reader.read(part, opts)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.integers(0, 3), st.integers(0, 3))
def test_extxyz_reader_survives_garbage_between_good_frames(tmp_path, garbage, before, after):
    """Good frames around arbitrary bytes: no exception, good frames kept, garbage accounted for."""
    path = tmp_path / "fuzz.extxyz"
    path.write_bytes(GOOD * before + garbage + b"\n" + GOOD * after)
    items = _read_all(path)
    records = [i for i in items if isinstance(i, Record)]
    rejected = [i for i in items if isinstance(i, Rejected)]
    for rec in records:
        assert rec.positions.shape == (rec.n_atoms, 3)
    for rej in rejected:
        assert rej.reason and rej.source_file
    # frames before the garbage are always intact; garbage may at worst swallow the next frame
    assert sum(1 for r in records if r.energy == -7.1) >= before
    assert len({r.id for r in records}) == len(records)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(FINITE, hnp.arrays(np.float64, (2, 3), elements=st.floats(-5, 5))), min_size=1, max_size=6))
def test_extxyz_reader_matches_written_values(tmp_path, frames):
    """Whatever energies and positions are written, the reader gives them back exactly (repr floats)."""
    path = tmp_path / "vals.extxyz"
    with open(path, "w") as fh:
        for energy, pos in frames:
            fh.write(
                f'2\nLattice="9 0 0 0 9 0 0 0 9" Properties=species:S:1:pos:R:3 energy={float(energy)!r} pbc="T T T"\n'
            )
            for z, p in zip(["H", "He"], pos):
                fh.write(f"{z} {float(p[0])!r} {float(p[1])!r} {float(p[2])!r}\n")
    items = _read_all(path)
    assert [getattr(i, "reason", None) for i in items] == [None] * len(frames)
    for rec, (energy, pos) in zip(items, frames):
        assert rec.energy == energy or (math.isclose(rec.energy, energy, rel_tol=0, abs_tol=0))
        np.testing.assert_array_equal(rec.positions, pos)
