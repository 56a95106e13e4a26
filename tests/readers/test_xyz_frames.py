"""Frame splitting of (extended) XYZ files under absurd and malformed atom-count lines.

A count line is one ``[+]digits`` ASCII token; a count above ``MAX_ATOMS`` (2**63, 10**12) is a
quarantined frame and the reader resynchronises at the next count line, reading no atom block
for it; a plausible count larger than the rest of the file reads no further than the next
frame. Memory is measured with ``tracemalloc`` over a generated ~20 MB file.
"""

from __future__ import annotations

import gzip
import io
import tracemalloc
from pathlib import Path

import pytest

from omni_data.readers import ReadOptions, get_reader
from omni_data.readers._xyz_frames import MAX_ATOMS, iter_frames, scan_offsets
from omni_data.schema import Record, Rejected
from omni_data.testing import check_reader

extxyz = get_reader("extxyz")
CORPUS = Path(__file__).parents[1] / "hostile" / "corpus"
HEADER = 'Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3 energy={e} pbc="T T T"'


def _opts() -> ReadOptions:
    return ReadOptions(dataset="t", task="test")


def _frame(energy: float, n: int = 2) -> bytes:
    """A frame of ``n`` Cu atoms on a zigzag (neighbours 2.55 Å apart), in ASE's %16.8f layout."""
    rows = ((1.8 * i, 1.8 * (i % 2), 0.0, 0.1, 0.0, 0.0) for i in range(n))
    atoms = "".join("Cu" + "".join(f" {v:16.8f}" for v in row) + "\n" for row in rows)
    return f"{n}\n{HEADER.format(e=energy)}\n{atoms}".encode()


def _bad(count: bytes) -> bytes:
    """A frame whose count line is ``count``, with a header and two atom lines that would parse."""
    return count + b"\n" + HEADER.format(e=-9.0).encode() + b"\nCu 0 0 0 0 0 0\nCu 1.8 1.8 0 0 0 0\n"


def _items(path: Path, target: int = 10**12) -> list[Record | Rejected]:
    return [i for part in extxyz.partitions(path, target) for i in extxyz.read(part, _opts())]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_count_of_2_pow_63_is_quarantined_and_every_good_frame_kept(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"huge.extxyz{suffix}"
    data = _frame(-1.0) + _frame(-2.0) + _bad(str(2**63).encode()) + _frame(-3.0) + _frame(-4.0)
    path.write_bytes(gzip.compress(data) if suffix else data)
    report = check_reader("extxyz", path, _opts(), target=2, expected_records=4, expected_rejected=1)
    assert sorted(r.energy for r in report.records) == [-4.0, -3.0, -2.0, -1.0]
    (rej,) = report.rejected
    # count line 9 (two 4-line frames before it), byte = length of those two frames
    offset = len(_frame(-1.0) + _frame(-2.0))
    assert rej.reason == (
        f"parse:atom count 9223372036854775808 at line 9 (byte {offset}) "
        f"is above the limit of {MAX_ATOMS} atoms per frame"
    )
    assert rej.source_index == 2 and rej.detail == {"byte_offset": offset, "line": 9}
    assert [r.source_index for r in sorted(report.records, key=lambda r: r.source_index)] == [0, 1, 3, 4]


def test_hostile_corpus_file_with_huge_counts(tmp_path: Path) -> None:
    """The corpus file: counts 2**63 (with a parsable frame body) and 10**12 (with a junk line)."""
    path = CORPUS / "huge_atom_count.extxyz"
    report = check_reader("extxyz", path, _opts(), target=2, expected_records=4, expected_rejected=2)
    assert sorted(r.energy for r in report.records) == [-7.4, -7.3, -7.2, -7.1]
    reasons = sorted(r.reason for r in report.rejected)
    assert reasons[0].startswith("parse:atom count 1000000000000 at line 17 ")
    assert reasons[1].startswith("parse:atom count 9223372036854775808 at line 9 ")
    count_lines = sum(1 for line in path.read_bytes().splitlines() if line.strip().isdigit())
    assert count_lines == 6 == len(report.records) + len(report.rejected)  # read = written + quarantined


def test_count_with_thousands_of_digits_is_quarantined(tmp_path: Path) -> None:
    """Python refuses int() of more than 4300 digits; such a count is still only one bad frame."""
    path = tmp_path / "digits.extxyz"
    path.write_bytes(_frame(-1.0) + _bad(b"7" * 5000) + _frame(-2.0))
    a, b, c = _items(path)
    assert isinstance(a, Record) and isinstance(c, Record) and (a.energy, c.energy) == (-1.0, -2.0)
    assert isinstance(b, Rejected)
    assert b.reason.startswith("parse:atom count 77777777777777777777...(5000 characters) at line 5 ")


@pytest.mark.parametrize(
    "count", [b"-3", b"-0", b"1e9", b"3.0", b"1_0", b"0x2", b"++2", b"2 2", "\u0663".encode(), "\uff12".encode()]
)  # Arabic-Indic 3, fullwidth 2
def test_malformed_count_lines_are_bad_count_frames(tmp_path: Path, count: bytes) -> None:
    path = tmp_path / "bad.extxyz"
    path.write_bytes(_frame(-1.0) + _bad(count) + _frame(-2.0))
    a, b, c = _items(path, target=1)
    assert (a.energy, c.energy) == (-1.0, -2.0) and c.source_index == 2
    line = count + b"\n"
    assert isinstance(b, Rejected) and b.reason == f"parse:bad count line {line!r} at line 5 (byte {len(_frame(-1.0))})"


@pytest.mark.parametrize("count", [b"+2", b"  2  ", b"002", b"2\r", b"0000000000002", b"0" * 5000 + b"2"])
def test_plus_sign_padding_and_leading_zeros_are_counts(tmp_path: Path, count: bytes) -> None:
    path = tmp_path / "ok.extxyz"
    path.write_bytes(_frame(-1.0) + _bad(count) + _frame(-2.0))
    items = _items(path, target=1)
    assert [type(i) for i in items] == [Record, Record, Record]
    assert [i.energy for i in items] == [-1.0, -9.0, -2.0]


def test_limit_is_inclusive_and_counts_beyond_the_file_are_too_few_or_truncated() -> None:
    data = (
        _frame(-1.0)
        + _bad(str(MAX_ATOMS).encode())
        + _bad(str(MAX_ATOMS + 1).encode())
        + _frame(-2.0)
        + b"500000\ncomment\nCu 0 0 0 0 0 0\n"
    )
    frames = list(iter_frames(io.BytesIO(data)))
    assert [f.error is None for f in frames] == [True, False, False, True, False]
    assert frames[1].error == (
        f"parse:too few atom lines in frame at line 5 (byte {len(_frame(-1.0))}): "
        f"expected {MAX_ATOMS}, found 2 before the next count line"
    )
    assert frames[2].error.startswith(f"parse:atom count {MAX_ATOMS + 1} at line 9 ")
    assert frames[4].error.endswith("expected 500000 atom lines, file ends after 1")
    assert [f.line_no for f in frames] == [1, 5, 9, 13, 17]
    assert scan_offsets(io.BytesIO(data)) == [(f.offset, f.line_no) for f in frames]


def _good_frames(n_frames: int, n_atoms: int) -> bytes:
    return b"".join(_frame(-0.5 - i % 7, n_atoms) for i in range(n_frames))


@pytest.fixture(scope="module")
def big_body() -> bytes:
    """~20 MB of good 100-atom frames (about 10.6 kB each)."""
    body = _good_frames(1800, 100)
    assert 18e6 < len(body) < 25e6
    return body


@pytest.mark.parametrize("count", [10**12, 5_000_000])  # absurd; plausible but beyond the file
def test_huge_count_reads_the_frames_after_it_in_bounded_memory(tmp_path: Path, big_body: bytes, count: int) -> None:
    path = tmp_path / "big.extxyz"
    path.write_bytes(_frame(-1.0) + f"{count}\nnot a header\n".encode() + big_body)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        n_records, rejected = 0, []
        for part in extxyz.partitions(path, 10**12):
            for item in extxyz.read(part, _opts()):
                if isinstance(item, Record):
                    n_records += 1
                else:
                    rejected.append(item.reason)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n_records == 1801 and len(rejected) == 1  # read = written + quarantined: 1802 count lines
    assert rejected[0].startswith("parse:") and f"{count}" in rejected[0] and "at line 5 " in rejected[0]
    assert peak < size / 20, f"peak {peak} bytes while reading a {size}-byte file"
