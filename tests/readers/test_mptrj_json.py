"""mptrj_json reader on a generated MPtrj-layout file.

No real MPtrj subset is public in any repository (see PROVENANCE.md), so the fixture follows the
layout CHGNet documents for ``MPtrj_2022.9_full.json`` (chgnet ``chgnet/data/dataset.py``
``StructureJsonData``; MPtrj figshare description): ``{mp_id: {frame_id: {"structure":
Structure.as_dict(), "uncorrected_total_energy", "corrected_total_energy", "energy_per_atom",
"ef_per_atom", "e_per_atom_relaxed", "ef_per_atom_relaxed", "force" (eV/Å), "stress" (3x3 kBar),
"magmom", "bandgap", "mp_id"}}}``. Values are checked against plain ``json.load`` + pymatgen.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from omni_data.readers import ReadOptions, mptrj_json
from omni_data.readers._json_scan import scan_object
from omni_data.testing import check_reader

KBAR_TO_EVA3 = 0.1 * 0.006241509125883258  # 1 kBar = 0.1 GPa; 1 GPa = 0.00624150912588 eV/Å³


def _symmetric(m: np.ndarray) -> np.ndarray:
    return (m + m.T) / 2


def _frame(rng: np.random.Generator, mp_id: str, n_cells: int, magmom: bool) -> dict:
    lattice = Lattice(np.diag([4.0, 4.2, 4.4]) + rng.normal(scale=0.05, size=(3, 3)))
    species = ["Fe", "O"] * n_cells
    coords = rng.uniform(size=(len(species), 3))
    struct = Structure(lattice, species, coords)
    n = len(species)
    e = float(-7.0 * n + rng.normal())
    return {
        "structure": struct.as_dict(),
        "uncorrected_total_energy": e,
        "corrected_total_energy": e - 1.5,
        "energy_per_atom": (e - 1.5) / n,
        "ef_per_atom": -1.0,
        "e_per_atom_relaxed": e / n - 0.1,
        "ef_per_atom_relaxed": -1.1,
        "force": rng.normal(size=(n, 3)).tolist(),
        # a symmetric VASP stress plus a rounding-size asymmetry (0.01 kBar), as written files carry
        "stress": (_symmetric(rng.normal(size=(3, 3)) * 10) + rng.normal(size=(3, 3)) * 0.01).tolist(),
        "magmom": rng.uniform(0, 4, n).tolist() if magmom else None,
        "bandgap": 0.5,
        "mp_id": mp_id,
    }


def _fixture(path: Path, indent: int | None) -> dict:
    rng = np.random.default_rng(7)
    data: dict = {}
    frame_counts = [3, 1, 4, 2, 5]
    for m, count in enumerate(frame_counts):
        mp_id = f"mp-{1000 + m}"
        data[mp_id] = {}
        for f in range(count):
            frame_id = f"{mp_id}-{f}-{f + 1}"
            if m == 2 and f == 1:
                frame_id = 'odd {"id": [\\"x\\"]} \\\\'  # braces, escaped quotes and backslashes inside a key
            data[mp_id][frame_id] = _frame(rng, mp_id, 1 + f % 2, magmom=f != 0)
    data["mp-1003"]["mp-1003-0-1"]["structure"]["sites"][0]["species"].append({"element": "Co", "occu": 0.5})
    path.write_text(json.dumps(data, indent=indent))
    return data


@pytest.mark.parametrize("indent", [None, 2])
def test_values_against_json_and_pymatgen(tmp_path: Path, indent: int | None) -> None:
    path = tmp_path / "MPtrj_2022.9_sample.json"
    data = _fixture(path, indent)
    opts = ReadOptions(dataset="mptrj", task="mpa")
    report = check_reader("mptrj_json", path, opts, target=4, expected_records=14, expected_rejected=1)
    assert report.n_partitions == 4  # mp-ids of 3+1 | 4 | 2 | 5 frames: never split
    assert report.rejected[0].reason.startswith("parse:") and "disordered" in report.rejected[0].reason
    by_id = {r.id: r for r in report.records}
    for mp_id, frames in data.items():
        for frame_id, ref in frames.items():
            rid = f"mptrj:{mp_id}/{frame_id}"
            if rid not in by_id:
                assert frame_id == "mp-1003-0-1"
                continue
            rec = by_id[rid]
            struct = Structure.from_dict(ref["structure"])
            assert np.allclose(rec.positions, struct.cart_coords, atol=1e-12)
            assert np.allclose(rec.cell, struct.lattice.matrix)
            assert rec.numbers.tolist() == list(struct.atomic_numbers)
            assert rec.energy == ref["uncorrected_total_energy"] and rec.energy_kind == "total"
            assert np.array_equal(rec.forces, np.asarray(ref["force"]))
            s = np.asarray(ref["stress"])
            # the symmetric part (σ+σᵀ)/2, its asymmetry noted in eV/Å³ for the sanity check
            sym = (s + s.T) / 2
            by_hand = -KBAR_TO_EVA3 * np.array([sym[0, 0], sym[1, 1], sym[2, 2], sym[1, 2], sym[0, 2], sym[0, 1]])
            assert np.allclose(rec.stress, by_hand, rtol=1e-14, atol=0)
            asym = KBAR_TO_EVA3 * np.abs(s - s.T).max() / 2
            assert rec.metadata.get("stress_asymmetry", 0.0) == pytest.approx(asym, rel=1e-12)
            assert (rec.magmoms is None) == (ref["magmom"] is None)
            assert rec.metadata["mp_id"] == mp_id
            assert rec.metadata["corrected_total_energy"] == ref["corrected_total_energy"]
    # compression positive in kBar -> negative in ASE convention
    rec = by_id["mptrj:mp-1000/mp-1000-0-1"]
    assert np.sign(rec.stress[0]) == -np.sign(data["mp-1000"]["mp-1000-0-1"]["stress"][0][0])


def test_corrected_energy_option(tmp_path: Path) -> None:
    path = tmp_path / "mptrj.json"
    data = _fixture(path, None)
    opts = ReadOptions(dataset="mptrj", task="mp", energy_key="corrected_total_energy")
    parts = mptrj_json.partitions(path, 100)
    rec = next(r for r in mptrj_json.read(parts[0], opts) if getattr(r, "id", "") == "mptrj:mp-1004/mp-1004-2-3")
    assert rec.energy == data["mp-1004"]["mp-1004-2-3"]["corrected_total_energy"]
    assert rec.energy_kind == "corrected"


@pytest.mark.parametrize("chunk", [5, 64, 1 << 20])
def test_scanner_offsets_independent_of_chunking(tmp_path: Path, chunk: int) -> None:
    path = tmp_path / "mptrj.json"
    data = _fixture(path, 1)
    raw = path.read_bytes()
    index = scan_object(io.BytesIO(raw), "t", chunk=chunk)
    assert [len(v) for v in data.values()] == index.children
    for key, off in zip(data, index.offsets):
        assert raw[off:].startswith(json.dumps(key).encode())
    assert raw[index.end :].strip() == b"}"


def test_truncated_file_is_reader_error(tmp_path: Path) -> None:
    from omni_data.readers import ReaderError

    path = tmp_path / "mptrj.json"
    _fixture(path, None)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ReaderError, match="truncated"):
        mptrj_json.partitions(path, 10)


def test_gzipped_file_gives_the_same_records(tmp_path: Path) -> None:
    import gzip

    plain = tmp_path / "mptrj.json"
    _fixture(plain, None)
    packed = tmp_path / "mptrj.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    opts = ReadOptions(dataset="mptrj", task="mpa")
    a = check_reader("mptrj_json", plain, opts, target=4)
    b = check_reader("mptrj_json", packed, opts, target=4)
    assert a.ids == b.ids and len(a.ids) == 14
    assert all(np.array_equal(x.forces, y.forces) for x, y in zip(a.records, b.records))


# --- damaged files (issue 17 fuzzing): a broken mp-id fails alone, never the file ----------------


def test_bad_json_in_one_mp_id_rejects_only_its_frames(tmp_path: Path) -> None:
    path = tmp_path / "MPtrj_damaged.json"
    _fixture(path, None)
    text = path.read_text()
    at = text.index('"mp-1001"')
    broken = text[:at] + text[at:].replace('"force": [', '"force": [,', 1)  # mp-1001 holds 1 frame
    at4 = broken.index('"mp-1004"')
    raw = broken[:at4].encode() + broken[at4:].encode().replace(b'"bandgap"', b'"band\xffgap"', 1)  # not UTF-8
    path.write_bytes(raw)
    report = check_reader(
        "mptrj_json",
        path,
        ReadOptions(dataset="mptrj", task="mpa"),
        target=4,
        expected_records=14 - 1 - 5,
        expected_rejected=1 + 1 + 5,
    )
    reasons = [r.reason for r in report.rejected if "disordered" not in r.reason]
    assert [r.source_id for r in report.rejected if r.reason in reasons] == ["mp-1001"] + ["mp-1004"] * 5
    assert all(r.startswith("parse:bad JSON in mp-id") for r in reasons)
    assert "utf-8" in reasons[-1]
    assert {r.id.split("/")[0] for r in report.records} == {"mptrj:mp-1000", "mptrj:mp-1002", "mptrj:mp-1003"}


def test_stray_closing_brace_is_reader_error_naming_the_file(tmp_path: Path) -> None:
    """A '}' that ends the top-level object early used to index keys past its end (a negative read
    length, ValueError); the data after it would be dropped, so the file is refused instead."""
    from omni_data.readers import ReaderError

    path = tmp_path / "MPtrj_stray.json"
    _fixture(path, None)
    text = path.read_text()
    at = text.index(', "mp-1001"')
    path.write_text(text[:at] + "}" + text[at:])
    with pytest.raises(ReaderError, match=r"MPtrj_stray\.json: data after the end of the top-level JSON value"):
        mptrj_json.partitions(path, 4)
