"""qcml reader on TFRecord shards written here by an independent encoder.

No QCML sample exists in shared/data. The fixture follows the TFRecord spec
(tensorflow.org/tutorials/load_data/tfrecord, "TFRecords format details": uint64 length, uint32
masked crc32c of the length, data, uint32 masked crc32c of the data) and the ``tf.train.Example``
protobuf (tensorflow/core/example/example.proto and feature.proto), with the feature names of
QCML's ``dft_force_field`` TFRecord schema (atomic_numbers, positions, pbe0_energy, pbe0_forces,
pbe0_formation_energy, charge, multiplicity, is_outlier, key_hash).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from omni_data.readers import Partition, ReaderError, ReadOptions, qcml
from omni_data.readers._tfrecord import crc32c, masked_crc, parse_example
from omni_data.testing import check_reader

HARTREE = 27.211386024367243
BOHR = 0.5291772105638411


# --------------------------------------------------------------------------- independent encoder
def _crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(kind: str, values: list, packed: bool = True) -> bytes:
    if kind == "bytes":
        return _ld(1, b"".join(_ld(1, v) for v in values))
    if kind == "float":
        if packed:
            return _ld(2, _ld(1, struct.pack(f"<{len(values)}f", *values)))
        return _ld(2, b"".join(_varint(1 << 3 | 5) + struct.pack("<f", v) for v in values))
    if packed:
        return _ld(3, _ld(1, b"".join(_varint(v) for v in values)))
    return _ld(3, b"".join(_varint(1 << 3 | 0) + _varint(v) for v in values))


def _example(features: dict[str, tuple[str, list]], packed: bool = True) -> bytes:
    entries = b"".join(
        _ld(1, _ld(1, k.encode()) + _ld(2, _feature(kind, vals, packed))) for k, (kind, vals) in features.items()
    )
    return _ld(1, entries)


def _frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", _mask(_crc32c_bitwise(length)))
        + data
        + struct.pack("<I", _mask(_crc32c_bitwise(data)))
    )


def _molecules(n: int, force_scale: float = 1.0) -> list[dict]:
    """``n`` molecules; ``force_scale`` scales the forces (0.05 keeps Hartree/Bohr ones under 50 eV/Å)."""
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        k = 3 + i % 4
        out.append(
            {
                "atomic_numbers": ("int", rng.choice([1, 6, 7, 8], k).tolist()),
                "positions": ("float", rng.normal(size=3 * k).tolist()),
                "pbe0_energy": ("float", [-100.0 - i]),
                "pbe0_forces": ("float", (rng.normal(size=3 * k) * force_scale).tolist()),
                "pbe0_formation_energy": ("float", [-1.5]),
                "charge": ("int", [-1 if i == 2 else 0]),
                "multiplicity": ("int", [2 if i == 2 else 1]),
                "is_outlier": ("int", [1 if i == 4 else 0]),
                "key_hash": ("bytes", [f"{i:08x}deadbeef".encode()]),
            }
        )
    return out


def _write(path: Path, mols: list[dict], packed: bool = True) -> None:
    path.write_bytes(b"".join(_frame(_example(m, packed)) for m in mols))


def test_crc32c_known_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283 == _crc32c_bitwise(b"123456789")  # RFC 3720 check value
    blob = bytes(range(256)) * 3
    assert crc32c(blob) == _crc32c_bitwise(blob)
    assert masked_crc(blob) == _mask(_crc32c_bitwise(blob))


@pytest.mark.parametrize("packed", [True, False])
def test_parse_example(packed: bool) -> None:
    ex = parse_example(
        _example({"i": ("int", [1, -2, 2**40]), "f": ("float", [0.5, -1.25]), "b": ("bytes", [b"x", b""])}, packed)
    )
    assert ex["i"].tolist() == [1, -2, 2**40]
    assert ex["f"].tolist() == [0.5, -1.25]
    assert ex["b"] == [b"x", b""]


def test_values_units_and_outlier(tmp_path: Path) -> None:
    mols = _molecules(7)
    path = tmp_path / "qcml-dft_force_field-train.tfrecord"
    _write(path, mols)
    opts = ReadOptions(
        dataset="qcml", task="omol", energy_unit="hartree", length_unit="Å", options={"force_unit": "hartree/bohr"}
    )
    report = check_reader("qcml", path, opts, target=3, expected_records=6, expected_rejected=1)
    assert report.n_partitions == 3
    (outlier,) = report.rejected
    assert (
        outlier.reason == "filter:is_outlier" and outlier.source_index == 4 and outlier.source_id == "00000004deadbeef"
    )
    rec = next(r for r in report.records if r.id == "qcml:00000002deadbeef")
    ref = mols[2]
    assert rec.numbers.tolist() == ref["atomic_numbers"][1]
    assert np.allclose(rec.positions, np.asarray(ref["positions"][1], dtype=np.float32).reshape(-1, 3))
    assert rec.energy == pytest.approx(-102.0 * HARTREE, rel=1e-15)
    f32 = np.asarray(ref["pbe0_forces"][1], dtype=np.float32).astype(float).reshape(-1, 3)
    assert np.allclose(rec.forces, f32 * HARTREE / BOHR, rtol=1e-12)
    assert rec.charge == -1.0 and rec.spin == 2
    assert rec.metadata["formation_energy"] == pytest.approx(-1.5 * HARTREE)


def test_corrupt_record_is_rejected_and_the_others_read(tmp_path: Path) -> None:
    path = tmp_path / "shard.tfrecord"
    _write(path, _molecules(3), packed=False)
    raw = bytearray(path.read_bytes())
    raw[40] ^= 0xFF  # inside the first record's data; its length (and so the next record) is intact
    path.write_bytes(bytes(raw))
    parts = qcml.partitions(path, 10)  # headers are intact
    items = list(qcml.read(parts[0], ReadOptions(dataset="q", task="t")))
    assert [type(i).__name__ for i in items] == ["Rejected", "Record", "Record"]
    assert (
        items[0].source_index == 0
        and items[0].reason.startswith("parse:")
        and "bad data CRC in record at byte 0" in items[0].reason
    )
    assert [r.id for r in items[1:]] == ["q:00000001deadbeef", "q:00000002deadbeef"]
    path.write_bytes(bytes(raw[:-10]))
    with pytest.raises(ReaderError, match="truncated"):
        list(qcml.read(qcml.partitions(path, 10)[0], ReadOptions(dataset="q", task="t", options={"verify_crc": False})))


def test_huge_record_length_is_reader_error_not_an_allocation(tmp_path: Path) -> None:
    """A length field of 2**62 with a valid CRC (a hostile file can compute it) once made the reader
    ask for 2**62 bytes (MemoryError); now it is refused, naming the file and the byte."""
    path = tmp_path / "hostile.tfrecord"
    length = struct.pack("<Q", 1 << 62)
    path.write_bytes(length + struct.pack("<I", _mask(_crc32c_bitwise(length))) + b"\0" * 64)
    with pytest.raises(
        ReaderError, match=r"hostile\.tfrecord: implausible record length 4611686018427387904 at byte 0"
    ):
        qcml.partitions(path, 10)
    good = tmp_path / "good.tfrecord"
    _write(good, _molecules(2))
    path.write_bytes(good.read_bytes() + path.read_bytes())  # two good records, then the hostile header
    part = Partition(str(path), 0, 3, (("offset", 0),))  # records 0 and 1 are good; 2 is the hostile one
    with pytest.raises(ReaderError, match=r"hostile\.tfrecord: implausible record length .* at byte"):
        list(qcml.read(part, ReadOptions(dataset="q", task="t")))


def _methane_in_atomic_units(n: int) -> list[dict]:
    """Methane as QCML's public readers read the release: positions in Bohr (C-H 2.061 Bohr = 1.091 Å),
    PBE0 total in Hartree (-40.4 Ha), forces in Hartree/Bohr."""
    ch = 1.19  # Bohr per Cartesian component: |(1.19, 1.19, 1.19)| = 2.061 Bohr
    ch4 = np.array([[0, 0, 0], [ch, ch, ch], [-ch, -ch, ch], [-ch, ch, -ch], [ch, -ch, -ch]], dtype=float)
    mols = _molecules(n, force_scale=0.01)
    for mol in mols:
        mol.update(
            atomic_numbers=("int", [6, 1, 1, 1, 1]),
            positions=("float", ch4.ravel().tolist()),
            pbe0_energy=("float", [-40.4]),
            pbe0_forces=("float", [0.01, -0.02, 0.03] * 5),
            is_outlier=("int", [0]),
        )
    return mols


def test_the_packaged_manifest_reads_atomic_units_and_the_draft_guesses_them(tmp_path: Path) -> None:
    from omni_data.manifest import load_manifest
    from omni_data.manifest_draft import draft_manifest

    path = tmp_path / "qcml-full.tfrecord-00000-of-00001"
    _write(path, _methane_in_atomic_units(3))
    m = load_manifest("qcml")
    from omni_data.readers import get_reader

    reader = get_reader("qcml")
    recs = [r for part in reader.partitions(path, 10) for r in reader.read(part, m.read_options())]
    assert len(recs) == 3
    ch = np.linalg.norm(recs[0].positions[1] - recs[0].positions[0])
    assert ch == pytest.approx(2.0611 * 0.5291772105638411, rel=1e-4)  # 1.0907 Å: a C-H bond
    assert recs[0].energy == pytest.approx(-40.4 * 27.211386024367243, rel=1e-6)
    np.testing.assert_allclose(
        recs[0].forces[0], np.array([0.01, -0.02, 0.03]) * 27.211386024367243 / 0.5291772105638411, rtol=1e-6
    )
    text = draft_manifest(path).text
    assert 'energy: "hartree"' in text and 'length: "bohr"' in text
