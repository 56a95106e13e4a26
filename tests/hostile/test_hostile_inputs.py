"""Hostile input corpus: every bad file gets a clear error or a quarantine reason, never a crash of
the whole run and never a silent drop; records in = written + quarantined.

The extxyz files under ``corpus/`` were written by hand for this test (see ``docs/reliability.md``);
binary cases (corrupt LMDB, ``.aselmdb`` with a missing key) are built here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lmdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from omni_data.cli.main import main
from omni_data.store import Store

CORPUS = Path(__file__).parent / "corpus"

MANIFEST = {
    "name": "hostile",
    "task": "hostile",
    "description": "hand-written hostile inputs",
    "format": "extxyz",
    "level_of_theory": {"code": "EMT-like", "functional": "none"},
    "licence": "CC0-1.0",
    "citation": "this test",
    "units": {"energy": "eV", "length": "Å"},
    # Cu is about -3.5 eV/atom here; hartree numbers (-1640 "eV"/atom) fall far outside.
    "filters": {"energy_per_atom": [-20.0, 5.0], "min_distance": 0.5, "max_force": 50.0},
}


def _ingest(tmp_path: Path, source: Path, fmt: str = "extxyz") -> tuple[int, Path]:
    manifest = tmp_path / "hostile.yaml"
    manifest.write_text(yaml.safe_dump({**MANIFEST, "format": fmt}))
    store = tmp_path / f"store-{source.name}"
    code = main(
        ["ingest", str(manifest), "--source", str(source), "--out", str(store), "--no-cluster", "--no-progress"]
    )
    return code, store


def _plain_ingest(tmp_path: Path, source: Path, fmt: str = "extxyz") -> tuple[int, Path]:
    """``omni-data ingest PATH`` with no manifest (so no filters)."""
    store = tmp_path / f"plain-{source.name}"
    code = main(
        [
            "ingest",
            str(source),
            "--format",
            fmt,
            "--dataset",
            "plain",
            "--task",
            "t",
            "--out",
            str(store),
            "--no-cluster",
            "--no-progress",
        ]
    )
    return code, store


def _quarantine_reasons(store: Path) -> list[str]:
    files = sorted((store / "quarantine").glob("*.parquet")) if (store / "quarantine").exists() else []
    return [r for f in files for r in pq.read_table(f).column("reason").to_pylist()]


def _counts(store: Path) -> tuple[int, list[str]]:
    written = len(Store(store)) if (store / "catalog.json").exists() else 0
    return written, _quarantine_reasons(store)


def _frames_in(path: Path) -> int:
    """Independent count of frames a person sees: lines that are a bare integer atom count."""
    count = 0
    for line in path.read_bytes().splitlines():
        if line.strip().isdigit():
            count += 1
    return count


@pytest.mark.parametrize(
    "name, written, reasons",
    [
        ("truncated.extxyz", 2, ["parse"]),
        ("nonfinite.extxyz", 1, ["nonfinite", "nonfinite", "nonfinite"]),
        ("wrong_shape_forces.extxyz", 1, None),
        ("hartree_in_ev.extxyz", 1, ["filter"]),
        ("zero_atoms.extxyz", 2, ["empty"]),
        # quarantined by the 0.1 Å physical floor before the manifest's min_distance filter runs
        ("overlapping_atoms.extxyz", 1, ["bad_value"]),
        # counts of 2**63 and 10**12: those two frames quarantined, the four good ones kept
        ("huge_atom_count.extxyz", 4, ["parse", "parse"]),
    ],
)
def test_bad_frames_are_quarantined_with_reasons(tmp_path, name, written, reasons):
    code, store = _ingest(tmp_path, CORPUS / name)
    got_written, got_reasons = _counts(store)
    assert got_written == written, (name, got_reasons)
    assert got_written + len(got_reasons) == _frames_in(CORPUS / name)
    if reasons is not None:
        assert [r.split(":")[0] for r in got_reasons] == reasons, got_reasons
    else:
        assert len(got_reasons) == 1 and got_reasons[0].split(":")[0] in {"parse", "bad_shape"}, got_reasons
    assert code == 0  # quarantined records are not failures; the run completed


def test_garbled_frames_resynchronise(tmp_path):
    code, store = _ingest(tmp_path, CORPUS / "garbled.extxyz")
    written, reasons = _counts(store)
    energies = sorted(rec.energy for rec in Store(store))
    assert energies == [-7.4, -7.2, -7.1]  # every good frame around the garbage survives
    assert len(reasons) >= 2 and all(r.startswith("parse") for r in reasons), reasons
    assert code == 0


def test_hartree_energy_reason_names_the_bound(tmp_path):
    _, store = _ingest(tmp_path, CORPUS / "hartree_in_ev.extxyz")
    (reason,) = _quarantine_reasons(store)
    assert reason.startswith("filter:energy_per_atom") and "1640" in reason.replace(",", ""), reason


def test_absurd_cells(tmp_path):
    _, store = _ingest(tmp_path, CORPUS / "absurd_cell.extxyz")
    written, reasons = _counts(store)
    assert any("zero volume" in r or "volume" in r for r in reasons), reasons
    assert written + len(reasons) == 3


def test_non_utf8_bytes_do_not_crash(tmp_path):
    code, store = _ingest(tmp_path, CORPUS / "non_utf8.extxyz")
    written, reasons = _counts(store)
    assert code == 0
    assert written + len(reasons) == 3 and written >= 2
    assert {-7.1, -7.2} <= {rec.energy for rec in Store(store)}


def test_empty_file_is_a_clear_error(tmp_path, capsys):
    code, store = _ingest(tmp_path, CORPUS / "empty.extxyz")
    err = capsys.readouterr().err
    written, reasons = _counts(store)
    assert written == 0
    # either an error naming the file (non-zero exit) or an explicit quarantine entry for it
    assert (code != 0 and "empty.extxyz" in err) or any("empty" in r for r in reasons), (code, err, reasons)


def test_corrupt_lmdb_fails_its_partition_naming_the_file(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    good = src / "a_good.extxyz"
    shutil.copy(CORPUS / "truncated.extxyz", good)
    bad = tmp_path / "bad.aselmdb"
    bad.write_bytes(b"\x00garbage, not an LMDB file\xff" * 50)
    code, store = _ingest(tmp_path, bad, fmt="aselmdb")
    err = capsys.readouterr().err
    assert code != 0
    assert "bad.aselmdb" in err


def _aselmdb_with_missing_row(path: Path) -> int:
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase_db_backends.aselmdb import LMDBDatabase

    with LMDBDatabase(path) as db:
        for i in range(4):
            atoms = bulk("Cu", "fcc", a=3.6 + 0.01 * i)
            atoms.calc = SinglePointCalculator(atoms, energy=-3.5 - i, forces=np.zeros((1, 3)))
            db.write(atoms)
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        assert txn.delete(b"3")  # row 3 vanishes without being listed in deleted_ids
    env.close()
    return 4


def test_aselmdb_with_missing_key_is_reported_not_dropped(tmp_path):
    path = tmp_path / "holes.aselmdb"
    rows = _aselmdb_with_missing_row(path)
    code, store = _ingest(tmp_path, path, fmt="aselmdb")
    written, reasons = _counts(store)
    assert written == rows - 1
    assert len(reasons) == 1 and "3" in reasons[0], reasons


def test_vasp_run_cut_mid_step(tmp_path, shared_data):
    src = shared_data / "vasp" / "dpdata_6362_relax_truncated.OUTCAR"
    code, store = _ingest(tmp_path, src, fmt="vasp")
    written, reasons = _counts(store)
    assert written >= 1
    assert any(r.startswith("parse") for r in reasons), reasons
    assert code == 0


# --- issue 17 item 7: atoms on top of each other, with no manifest filter -----------------------


def test_overlapping_atoms_are_quarantined_without_a_manifest(tmp_path):
    code, store = _plain_ingest(tmp_path, CORPUS / "overlapping_atoms.extxyz")
    written, reasons = _counts(store)
    assert code == 0 and written == 1
    assert reasons == ["bad_value:atoms 0 and 1 are 0.050 Å apart (< 0.1 Å)"]
    assert [rec.energy for rec in Store(store)] == [-7.1]  # the good frame is stored


def _frame(positions, cell, energy: float) -> str:
    lattice = " ".join(str(x) for row in cell for x in row)
    atoms = "".join(f"Cu {x} {y} {z}\n" for x, y, z in positions)
    return f'{len(positions)}\nLattice="{lattice}" Properties=species:S:1:pos:R:3 energy={energy} pbc="T T T"\n{atoms}'


def test_close_pair_only_across_the_periodic_boundary_is_quarantined(tmp_path):
    """4.96 Å apart inside a 5 Å cubic cell, 0.04 Å through the boundary (minimum image); a
    one-atom cell of 0.08 Å meets its own image."""
    cube = np.eye(3) * 5.0
    path = tmp_path / "boundary.extxyz"
    path.write_text(
        _frame([[0.02, 1.0, 1.0], [4.98, 1.0, 1.0]], cube, -7.0)
        + _frame([[0.0, 0.0, 0.0]], np.eye(3) * 0.08, -3.0)
        + _frame([[0.0, 1.0, 1.0], [2.5, 1.0, 1.0]], cube, -7.2)
    )
    code, store = _plain_ingest(tmp_path, path)
    written, reasons = _counts(store)
    assert code == 0 and [rec.energy for rec in Store(store)] == [-7.2]
    assert reasons == [
        "bad_value:atoms 0 and 1 are 0.040 Å apart (< 0.1 Å)",
        "bad_value:atom 0 and its own periodic image are 0.080 Å apart (< 0.1 Å)",
    ]


def test_real_samples_have_no_atoms_under_the_floor(tmp_path, shared_data):
    """Real published structures are all stored: the floor does not touch real data."""
    for name, fmt in [
        ("extxyz/sevennet_hfo2.extxyz", "extxyz"),
        ("extxyz/chemreporter_spice_amino_acid_ligand_26frames.extxyz", "extxyz"),
        ("asedb/fairchem_oxides.db", "asedb"),
    ]:
        code, store = _plain_ingest(tmp_path, shared_data / name, fmt)
        written, reasons = _counts(store)
        assert code == 0 and reasons == [] and written > 0, (name, reasons)


# --- issue 17 item 6: placeholder optional labels, and a source with nothing to store -----------


def _schnetpack_clusters(path: Path, rows: int) -> None:
    """SchNetPack-layout ASE db of charged clusters, spin_multiplicity 0.0 = "not set"."""
    import ase.db
    from ase import Atoms

    with ase.db.connect(path) as db:
        db.metadata = {
            "_property_unit_dict": {"energy": "eV", "forces": "eV/Ang", "total_charge": "e"},
            "_distance_unit": "Ang",
        }
        for i in range(rows):
            atoms = Atoms("Na2Cl", positions=[[0, 0, 0], [2.8, 0, 0], [1.4, 1.9, 0.1 * i]])
            db.write(
                atoms,
                data={
                    "energy": np.array([-5.0 - i]),
                    "forces": np.full((3, 3), 0.1 * i),
                    "total_charge": np.array([1.0]),
                    "spin_multiplicity": np.array([0.0]),
                },
            )


def test_spin_placeholder_is_dropped_counted_and_every_record_stored(tmp_path, capsys):
    src = tmp_path / "clusters.db"
    _schnetpack_clusters(src, 6)
    manifest = tmp_path / "clusters.yaml"
    unfiltered = {k: v for k, v in MANIFEST.items() if k != "filters"}
    manifest.write_text(
        yaml.safe_dump(
            {**unfiltered, "name": "clusters", "format": "asedb", "key_map": {"energy": "energy", "forces": "forces"}}
        )
    )
    store = tmp_path / "store"
    code = main(["ingest", str(manifest), "--source", str(src), "--out", str(store), "--no-cluster", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "labels dropped: spin 6" in out
    written, reasons = _counts(store)
    assert written == 6 and reasons == []
    records = sorted(Store(store), key=lambda r: r.source_index)
    assert [r.energy for r in records] == [-5.0 - i for i in range(6)]
    assert all(r.spin is None and r.charge == 1.0 for r in records)
    np.testing.assert_allclose(records[5].forces, np.full((3, 3), 0.5))
    run = Store(store).catalog.runs[-1]
    assert run["summary"]["labels_dropped"] == {"spin": 6} and run["summary"]["written"] == 6


def test_source_with_every_record_quarantined_exits_non_zero_with_the_top_reason(tmp_path, capsys):
    path = tmp_path / "all_bad.extxyz"
    cube = np.eye(3) * 5.0
    path.write_text(
        "".join(_frame([[1.0, 1.0, 1.0], [1.0, 1.0, 1.02]], cube, -7.0 - i) for i in range(3))
        + "2\nProperties=species:S:1:pos:R:3 energy=nan\nCu 0 0 0\nCu 2 0 0\n"
    )
    code, store = _plain_ingest(tmp_path, path)
    err = capsys.readouterr().err
    written, reasons = _counts(store)
    assert written == 0 and len(reasons) == 4
    assert code == 1
    (line,) = [e for e in err.splitlines() if "quarantined" in e]
    assert "all_bad.extxyz" in line and "all 4 records read were quarantined" in line
    assert "top reason bad_value (3 records)" in line and "0.020 Å apart" in line
