"""matpes_json reader on generated MatPES-layout files.

No MatPES sample is in shared/data; the fixture follows the record layout of the MatPES release
(``MatPES-PBE-2025.1.json.gz``, a gzipped JSON list; 2025.2 ships ``.jsonl``) as documented at
matpes.ai/dataset and used by the ``matpes`` package: ``matpes_id``, ``structure``
(Structure.as_dict()), ``energy`` (eV), ``forces`` (eV/Å), ``stress`` (6 Voigt kBar, VASP sign),
``magmoms``, ``formation_energy_per_atom``, ``cohesive_energy_per_atom``, ``bandgap``,
``functional``, ``formula_pretty``, ``provenance`` {``original_mp_id``, ``md_step``}.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from omni_data.readers import ReaderError, ReadOptions, matpes_json
from omni_data.testing import check_reader

KBAR_TO_EVA3 = 0.1 * 0.006241509125883258


def _entries(n: int) -> list[dict]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        struct = Structure(Lattice.cubic(3.0 + 0.1 * i), ["Li", "Cl", "Cl"], rng.uniform(size=(3, 3)))
        out.append(
            {
                "matpes_id": f"matpes-{20240214 + i}_{i % 3}",
                "structure": struct.as_dict(),
                "energy": -10.0 - i,
                "forces": rng.normal(size=(3, 3)).tolist(),
                "stress": (rng.normal(size=6) * 20).tolist(),
                "magmoms": None if i % 2 else [0.0, 0.1, -0.1],
                "formation_energy_per_atom": -1.2,
                "cohesive_energy_per_atom": -3.4,
                "bandgap": 2.0,
                "functional": "PBE",
                "formula_pretty": "LiCl2",
                "nsites": 3,
                "provenance": {"original_mp_id": f"mp-{100 + i // 2}", "md_step": 10 * i},
            }
        )
    out[5] = {k: v for k, v in out[5].items() if k != "structure"}  # broken entry -> Rejected
    return out


@pytest.mark.parametrize("layout", ["json.gz", "jsonl", "jsonl.gz"])
def test_values_against_json(tmp_path: Path, layout: str) -> None:
    entries = _entries(9)
    path = tmp_path / f"MatPES-PBE-2025.1.{layout}"
    text = json.dumps(entries, indent=1) if layout == "json.gz" else "\n".join(json.dumps(e) for e in entries) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if layout.endswith(".gz") else text.encode())
    report = check_reader(
        "matpes_json",
        path,
        ReadOptions(dataset="matpes", task="matpes_pbe"),
        target=4,
        expected_records=8,
        expected_rejected=1,
    )
    assert report.n_partitions == 3
    assert report.rejected[0].source_index == 5 and "structure" in report.rejected[0].reason
    with gzip.open(path) if layout.endswith(".gz") else open(path, "rb") as fh:
        raw = fh.read().decode()
    ref_entries = json.loads(raw) if layout == "json.gz" else [json.loads(line) for line in raw.splitlines()]
    by_id = {r.id: r for r in report.records}
    for ref in ref_entries:
        if "structure" not in ref:
            continue
        rec = by_id[f"matpes:{ref['matpes_id']}"]
        struct = Structure.from_dict(ref["structure"])
        assert np.allclose(rec.positions, struct.cart_coords, atol=1e-12)
        assert rec.numbers.tolist() == list(struct.atomic_numbers)
        assert rec.energy == ref["energy"]
        assert np.array_equal(rec.forces, np.asarray(ref["forces"]))
        assert np.allclose(rec.stress, -KBAR_TO_EVA3 * np.asarray(ref["stress"]), rtol=1e-14, atol=0)
        assert (rec.magmoms is None) == (ref["magmoms"] is None)
        assert rec.metadata["mp_id"] == ref["provenance"]["original_mp_id"]
        assert rec.metadata["formation_energy_per_atom"] == -1.2


def test_truncated_and_not_json(tmp_path: Path) -> None:
    path = tmp_path / "matpes.json.gz"
    path.write_bytes(gzip.compress(json.dumps(_entries(7)).encode()[:-50]))
    with pytest.raises(ReaderError, match="truncated"):
        matpes_json.partitions(path, 10)
    bad = tmp_path / "matpes.json"
    bad.write_text('"just a string"')
    with pytest.raises(ReaderError, match="neither a JSON array"):
        matpes_json.partitions(bad, 10)


def test_manifest_group_key_is_looked_up(tmp_path: Path) -> None:
    path = tmp_path / "MatPES-PBE.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in _entries(6)[:4]))
    opts = ReadOptions(dataset="m", task="t", key_map={"group": "provenance.original_mp_id"})
    recs = [r for p in matpes_json.partitions(path, 10) for r in matpes_json.read(p, opts)]
    assert [r.metadata["provenance.original_mp_id"] for r in recs] == ["mp-100", "mp-100", "mp-101", "mp-101"]


# --- damaged files (issue 17 fuzzing): a broken entry fails alone, never the file ----------------


@pytest.mark.parametrize("layout", ["json", "jsonl"])
def test_bad_json_entry_is_rejected_and_the_rest_kept(tmp_path: Path, layout: str) -> None:
    entries = _entries(9)
    texts = [json.dumps(e) for e in entries]
    texts[2] = texts[2].replace('"forces": [', '"forces": [,', 1)  # a syntax error inside entry 2
    raw = ("[" + ",\n".join(texts) + "]" if layout == "json" else "\n".join(texts) + "\n").encode()
    raw = raw.replace(b'"matpes-20240221_1"', b'"matpes-\xff_1"', 1)  # entry 7's id is not UTF-8
    path = tmp_path / f"sample_matpes.{layout}"
    path.write_bytes(raw)
    report = check_reader(
        "matpes_json",
        path,
        ReadOptions(dataset="matpes", task="matpes_pbe"),
        target=4,
        expected_records=6,
        expected_rejected=3,
    )
    by_index = {r.source_index: r.reason for r in report.rejected}
    assert sorted(by_index) == [2, 5, 7]
    assert by_index[2].startswith("parse:JSONDecodeError") and "structure" in by_index[5]
    assert by_index[7].startswith("parse:UnicodeDecodeError")
    assert sorted(r.source_index for r in report.records) == [0, 1, 3, 4, 6, 8]


def test_rejected_entry_keeps_the_id_under_the_mapped_key(tmp_path: Path) -> None:
    """MP-ALOE names its id ``mp_aloe_id`` (key_map id): a broken entry is quarantined under it."""
    entries = []
    for e in _entries(6):
        e = dict(e)
        e["mp_aloe_id"] = e.pop("matpes_id")
        entries.append(e)
    path = tmp_path / "MP_ALOE_data.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in entries))
    opts = ReadOptions(dataset="mp_aloe", task="mp_aloe", key_map={"id": "mp_aloe_id"})
    report = check_reader("matpes_json", path, opts, target=10, expected_records=5, expected_rejected=1)
    assert report.rejected[0].source_index == 5
    assert report.rejected[0].source_id == entries[5]["mp_aloe_id"]
