"""``omni-data ingest NAME --source DIR`` end to end, for every dataset manifest, on a local copy of
that database's download layout (issue #3 item 4).

The trees are built by ``layouts.py`` (each builder names where its layout is documented) from
real files in shared/data where the format has one, else from the reader tests' generators. Each
run goes through ``omni_data.cli.main.main`` and is checked for: exit code 0, the manifest's
task(s), ``read = written + quarantined`` (and equal to the count of records in the tree, worked out
from how it was built), group keys that ``split`` can resolve, and values equal to an independent
reader (ASE, ase-db-backends, pymatgen, h5py, json, pickle) in eV, Å, eV/Å and eV/Å³ (ASE sign).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import lzma
import pickle
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from omni_data.cli.main import main
from omni_data.harmonize.splits import group_value
from omni_data.manifest import Manifest, list_manifests, load_manifest
from omni_data.store import Store

_spec = importlib.util.spec_from_file_location("_omni_dataset_layouts", Path(__file__).with_name("layouts.py"))
assert _spec is not None and _spec.loader is not None
layouts = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = layouts
_spec.loader.exec_module(layouts)
Layout = layouts.Layout

# Hand-worked constants (CODATA; omni_data.units uses ASE's 2014 values, so compare to ~1e-7).
HARTREE_EV = 27.211386245988
BOHR_A = 0.529177210903
KBAR_EVA3 = 1e8 / 1.602176634e11  # 1 kBar = 1e8 Pa; 1 eV/Å³ = 1.602176634e-19 J / 1e-30 m³

# (records in the tree, of which quarantined), from how layouts.py builds each tree.
EXPECTED: dict[str, tuple[int, int]] = {
    "mptrj": (15, 1),  # 5 mp-ids x (3,1,4,2,5) frames; one frame with a disordered site
    "mp_r2scan": (15, 1),
    "matpes_pbe": (8, 1),  # one entry without a structure
    "matpes_r2scan": (8, 1),
    "salex": (6, 0),
    "omat24": (8, 1),  # one frame with a 200 eV/Å force: filter:max_force
    "mp_aloe": (6, 1),  # one entry with a 200 eV/Å force: filter:max_force
    "oc20": (5, 0),  # 3 + 2 frames
    "oc22": (8, 0),
    "odac23": (6, 0),
    "omol25": (180, 0),  # three real 60-row OMol25 files
    "spice": (55, 0),  # real SPICE: 50 + 5 conformations
    "qcml": (7, 1),  # one is_outlier
    "mad": (4, 0),  # real HfO2 (2 frames) + 2 EMT frames
    "bridge": (6, 1),  # 1 + 1 + 3 ionic steps converged, 1 SCAN static unconverged
}


def build(name: str, tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    kw = {"monkeypatch": monkeypatch} if name in layouts.NEEDS_MONKEYPATCH else {}
    return layouts.BUILDERS[name](tmp_path / "download" / name, shared, **kw)


def ingest(target: str, store: Path, capsys: pytest.CaptureFixture, source: Path | None = None) -> tuple[int, str, str]:
    argv = ["ingest", target, "--out", str(store), "--no-cluster", "--no-progress"]
    if source is not None:
        argv[2:2] = ["--source", str(source)]
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def summary_counts(out: str) -> tuple[int, int, int]:
    m = re.search(r"records read (\d+) = written (\d+) \+ quarantined (\d+)", out)
    assert m, out
    return int(m[1]), int(m[2]), int(m[3])


def quarantined_ids(store: Store) -> set[str]:
    return set(store.quarantine().column("source_id").to_pylist())


# --------------------------------------------------------------------------- independent readers
def check_aselmdb_bulk(store: Store, lay: Layout, m: Manifest, shared: Path) -> None:
    from ase_db_backends.aselmdb import LMDBDatabase

    bad = quarantined_ids(store)
    seen = 0
    for path in lay.files:
        rel = path.relative_to(lay.source).as_posix()
        db = LMDBDatabase(path, readonly=True)
        for row in db.select():
            rid = f"{m.dataset}:{rel}:{row.id}"
            if np.abs(row.forces).max() > 50:
                assert rid in bad
                continue
            rec = store.get(rid)
            assert rec.energy == row.energy and rec.energy_kind == "total"
            np.testing.assert_array_equal(rec.forces, row.forces)
            np.testing.assert_allclose(rec.stress, row.stress, rtol=1e-12, atol=0)  # ASE Voigt, eV/Å³
            np.testing.assert_array_equal(rec.positions, row.positions)
            np.testing.assert_array_equal(rec.cell, np.asarray(row.cell))
            assert rec.pbc.all() and rec.metadata["sid"] == row.data["sid"]
            seen += 1
        db.close()
    assert seen == len(store)


def check_omol25(store: Store, lay: Layout, m: Manifest, shared: Path) -> None:
    from ase_db_backends.aselmdb import LMDBDatabase

    for path in lay.files:
        rel = path.relative_to(lay.source).as_posix()
        db = LMDBDatabase(path, readonly=True)
        for row in db.select():
            rec = store.get(f"omol25:{rel}:{row.id}")
            assert rec.energy == row.energy  # eV, total ωB97M-V energy as stored
            np.testing.assert_array_equal(rec.forces, row.forces)
            assert rec.charge == row.data["charge"] and rec.spin == row.data["spin"]
            assert rec.task == ("omol25_low" if row.data["spin"] <= 2 else "omol25_high")
            assert rec.metadata["source"] == row.data["source"]
        db.close()


def check_pyg(store: Store, lay: Layout, m: Manifest, shared: Path) -> None:
    import lmdb

    seen = 0
    for path in lay.files:
        env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
        with env.begin() as txn:
            assert pickle.loads(txn.get(b"length")) == env.stat()["entries"] - 1  # fairchem's length key
            for key, value in txn.cursor():
                if key == b"length":
                    continue
                frame = pickle.loads(value)._store._mapping  # the fake PyG classes are still registered
                rec = store.get(f"{m.dataset}:{frame['sid']}_{frame['fid']}")
                assert rec.energy == frame["y"] and rec.energy_kind == "total"  # S2EF-total: raw total, eV
                np.testing.assert_array_equal(rec.forces, frame["force"].double().numpy())
                np.testing.assert_array_equal(rec.positions, frame["pos"].double().numpy())
                np.testing.assert_array_equal(rec.cell, frame["cell"].double().numpy().reshape(3, 3))
                assert rec.metadata["sid"] == frame["sid"] and rec.source_file == str(path)
                seen += 1
        env.close()
    assert seen == len(store)


def check_oc20(store: Store, lay: Layout, m: Manifest, shared: Path) -> None:
    from ase.io import read

    for xz in sorted(p for p in lay.files if p.name.endswith(".extxyz.xz")):
        stem = xz.name.split(".")[0]
        txt = next(p for p in lay.files if p.name.startswith(stem + ".txt"))
        raw = lzma.decompress(txt.read_bytes()) if txt.suffix == ".xz" else txt.read_bytes()
        lines = [line.split(",") for line in raw.decode().splitlines()]
        frames = read(xz, index=":")
        assert len(frames) == len(lines)
        for i, (atoms, (sid, fid, ref)) in enumerate(zip(frames, lines)):
            rec = store.get(f"oc20:s2ef_train_2M/{stem}.extxyz:{i}")
            assert rec.energy == atoms.get_potential_energy()  # the raw DFT total, not total - reference
            assert rec.energy_kind == "total"
            np.testing.assert_array_equal(rec.forces, atoms.get_forces(apply_constraint=False))
            if "tags" in atoms.arrays:  # ASE writes no tags column when all are 0 (the real slab)
                np.testing.assert_array_equal(rec.tags, atoms.get_tags())
            fixed = atoms.constraints[0].get_indices() if atoms.constraints else []
            assert np.flatnonzero(rec.fixed).tolist() == sorted(fixed)
            assert rec.metadata["sid"] == int(sid.removeprefix("random"))
            assert rec.metadata["fid"] == int(fid.removeprefix("frame"))
            assert rec.metadata["reference_energy"] == float(ref)
            assert group_value(rec, "sid") == sid.removeprefix("random")


def check_extxyz(store: Store, lay: Layout, m: Manifest, shared: Path) -> None:
    from ase.io import read

    bad = quarantined_ids(store)
    seen = 0
    for path in lay.files:
        for i, atoms in enumerate(read(path, index=":")):
            rid = f"{m.dataset}:{path.name}:{i}"
            if np.abs(atoms.get_forces()).max() > 50:
                assert rid in bad
                continue
            rec = store.get(rid)
            assert rec.energy == atoms.get_potential_energy()
            np.testing.assert_array_equal(rec.forces, atoms.get_forces())
            np.testing.assert_allclose(rec.stress, atoms.get_stress(voigt=True), rtol=1e-12, atol=1e-15)
            np.testing.assert_array_equal(rec.cell, atoms.cell.array)
            seen += 1
    assert seen == len(store)


def _voigt(m3: np.ndarray) -> np.ndarray:
    """Voigt of the symmetric part (σ+σᵀ)/2: what Omni stores for a 3x3 stress."""
    m3 = np.asarray(m3, dtype=float)
    m3 = (m3 + m3.T) / 2
    return np.array([m3[0, 0], m3[1, 1], m3[2, 2], m3[1, 2], m3[0, 2], m3[0, 1]])


def check_mptrj(store: Store, lay: Layout, m: Manifest, shared: Path) -> None:
    from pymatgen.core import Structure

    data = json.loads(lay.files[0].read_text())
    bad = quarantined_ids(store)
    for mp_id, frames in data.items():
        for frame_id, frame in frames.items():
            rid = f"{m.dataset}:{mp_id}/{frame_id}"
            if rid.split(":", 1)[1] in bad:
                continue
            rec = store.get(rid)
            struct = Structure.from_dict(frame["structure"])
            np.testing.assert_allclose(rec.positions, struct.cart_coords, atol=1e-12)
            assert rec.energy == frame["uncorrected_total_energy"] and rec.metadata["mp_id"] == mp_id
            np.testing.assert_array_equal(rec.forces, np.asarray(frame["force"]))
            np.testing.assert_allclose(rec.stress, -KBAR_EVA3 * _voigt(frame["stress"]), rtol=1e-8)


def check_matpes(store: Store, lay: Layout, m: Manifest, shared: Path) -> None:
    from pymatgen.core import Structure

    for entry in json.loads(gzip.decompress(lay.files[0].read_bytes())):
        rid = f"{m.dataset}:{entry['matpes_id']}"
        if "structure" not in entry:
            assert entry["matpes_id"] in quarantined_ids(store)
            continue
        rec = store.get(rid)
        np.testing.assert_allclose(rec.positions, Structure.from_dict(entry["structure"]).cart_coords, atol=1e-12)
        assert rec.energy == entry["energy"] and rec.metadata["mp_id"] == entry["provenance"]["original_mp_id"]
        np.testing.assert_array_equal(rec.forces, np.asarray(entry["forces"]))
        np.testing.assert_allclose(rec.stress, -KBAR_EVA3 * np.asarray(entry["stress"]), rtol=1e-8)


def check_mp_aloe(store: Store, lay: Layout, m: Manifest, shared: Path) -> None:
    from pymatgen.core import Structure

    bad = quarantined_ids(store)
    lines = gzip.decompress(lay.files[0].read_bytes()).decode().splitlines()
    seen = 0
    for entry in map(json.loads, lines):
        rid = f"{m.dataset}:{entry['mp_aloe_id']}"
        if np.abs(entry["forces"]).max() > 50:
            assert rid in bad
            continue
        rec = store.get(rid)
        np.testing.assert_allclose(rec.positions, Structure.from_dict(entry["structure"]).cart_coords, atol=1e-12)
        assert rec.energy == entry["energy"] and rec.metadata["matpes_id"] == entry["mp_aloe_id"]
        parent = entry["provenance"]["original_mp_id"]
        assert rec.metadata.get("mp_id") == parent  # absent, not "None", when the entry has no MP parent
        np.testing.assert_array_equal(rec.forces, np.asarray(entry["forces"]))
        np.testing.assert_allclose(rec.stress, -KBAR_EVA3 * np.asarray(entry["stress"]), rtol=1e-8)
        assert m.group_key == "formula" and group_value(rec, m.group_key) == "Cl2Li"  # Hill order of Li Cl Cl
        seen += 1
    assert seen == len(store) == len(lines) - 1


def check_spice(store: Store, lay: Layout, m: Manifest, shared: Path) -> None:
    import h5py

    with h5py.File(lay.files[0], "r") as h5:
        for name, group in h5.items():
            for j in (0, len(group["dft_total_energy"]) - 1):
                rec = store.get(f"spice:{name}/{j}")
                assert rec.numbers.tolist() == group["atomic_numbers"][()].tolist()
                np.testing.assert_allclose(rec.positions, group["conformations"][j] * BOHR_A, rtol=1e-7)
                assert rec.energy == pytest.approx(group["dft_total_energy"][j] * HARTREE_EV, rel=1e-7)
                np.testing.assert_allclose(
                    rec.forces, -group["dft_total_gradient"][j] * HARTREE_EV / BOHR_A, rtol=1e-6, atol=1e-9
                )


def check_qcml(store: Store, lay: Layout, m: Manifest, shared: Path) -> None:
    mols = layouts.load_test_module("test_qcml")._molecules(
        7, force_scale=0.05
    )  # the molecules the tree was written from
    for mol in mols:
        key = mol["key_hash"][1][0].decode()
        if mol["is_outlier"][1][0]:
            assert key in quarantined_ids(store)
            continue
        rec = store.get(f"qcml:{key}")
        assert rec.numbers.tolist() == mol["atomic_numbers"][1]
        # the manifest declares atomic units: Hartree, Bohr, Hartree/Bohr (ase.units' CODATA 2014 values)
        hartree, bohr = 27.211386024367243, 0.5291772105638411
        assert rec.energy == pytest.approx(mol["pbe0_energy"][1][0] * hartree, rel=1e-12)
        f32 = np.asarray(mol["pbe0_forces"][1], dtype=np.float32).astype(float).reshape(-1, 3)
        np.testing.assert_allclose(rec.forces, f32 * hartree / bohr, rtol=1e-12)
        pos = np.asarray(mol["positions"][1], dtype=np.float32).astype(float).reshape(-1, 3)
        np.testing.assert_allclose(rec.positions, pos * bohr, rtol=1e-12)
        assert rec.charge == mol["charge"][1][0] and rec.spin == mol["multiplicity"][1][0]


def check_bridge(store: Store, lay: Layout, m: Manifest, shared: Path) -> None:
    from ase.io import read
    from pymatgen.io.vasp import Vasprun

    record_id = "mptrj:mp-1000/mp-1000-0-1"
    job = layouts.bridge_job(record_id)
    rec = store.get(f"bridge:{job}/vasprun.xml:0")
    assert rec.metadata["source_id"] == record_id and rec.metadata["source_task"] == "mpa"
    assert rec.metadata["protocol"] == "mp-pbe-static"
    original = layouts.BRIDGE_RUNS[record_id][1]
    outcar = read(shared / "vasp" / original.replace(".vasprun.xml", ".OUTCAR"))
    assert rec.energy == pytest.approx(outcar.get_potential_energy(), abs=1e-8)  # not VASP 5.4.4's e_0 = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no POTCAR beside the copy
        step = Vasprun(str(lay.source / job / "vasprun.xml"), parse_potcar_file=False).ionic_steps[-1]
    np.testing.assert_allclose(rec.forces, np.asarray(step["forces"]), atol=1e-12)
    np.testing.assert_allclose(rec.stress, -KBAR_EVA3 * _voigt(step["stress"]), rtol=1e-8)
    (reason,) = store.quarantine().column("reason").to_pylist()
    assert reason.startswith("unconverged:electronic")
    by_source = {}
    for r in store:
        by_source.setdefault(r.metadata["source_id"], []).append(r.source_index)
    assert by_source == {
        "mptrj:mp-1000/mp-1000-0-1": [0],
        "oc20:s2ef_train_2M/0.extxyz:0": [0],
        "mad:mad-train.xyz:1": [0, 1, 2],
    }


CHECKS: dict[str, Callable[[Store, Layout, Manifest, Path], None]] = {
    "omat24": check_aselmdb_bulk,
    "salex": check_aselmdb_bulk,
    "omol25": check_omol25,
    "oc22": check_pyg,
    "odac23": check_pyg,
    "oc20": check_oc20,
    "mad": check_extxyz,
    "mp_aloe": check_mp_aloe,
    "mptrj": check_mptrj,
    "mp_r2scan": check_mptrj,
    "matpes_pbe": check_matpes,
    "matpes_r2scan": check_matpes,
    "spice": check_spice,
    "qcml": check_qcml,
    "bridge": check_bridge,
}


@pytest.fixture(autouse=True)
def _isolated_sources(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user source table or data root leaks into a test."""
    monkeypatch.setenv("OMNI_SOURCES", str(tmp_path / "no-sources.yaml"))
    monkeypatch.delenv("OMNI_DATA_ROOT", raising=False)


def test_every_manifest_has_a_layout() -> None:
    assert set(layouts.BUILDERS) == set(list_manifests()) == set(EXPECTED) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(layouts.BUILDERS))
def test_ingest_release_layout(
    name: str, tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    m = load_manifest(name)
    lay = build(name, tmp_path, shared_data, monkeypatch)
    rc, out, err = ingest(name, tmp_path / "store", capsys, lay.source)
    assert rc == 0, out + err
    read, written, quarantined = summary_counts(out)
    assert (read, quarantined) == EXPECTED[name] and read == written + quarantined
    store = Store(tmp_path / "store")
    assert len(store) == written and store.quarantine().num_rows == quarantined
    counts = store.catalog.counts
    assert set(counts["by_task"]) == set(m.tasks) and sum(counts["by_task"].values()) == written
    assert counts["by_dataset"] == {m.dataset: written}
    ids = [rec.id for rec in store]
    assert len(set(ids)) == written  # ids stay unique across the tree's files and folders
    for rec in store:
        assert rec.dataset == m.dataset and rec.task in m.tasks
        group_value(rec, m.group_key)  # raises naming the record if split could not group it
    CHECKS[name](store, lay, m, shared_data)


def test_ingest_omat_alias_on_omat24_tree(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The user's first command, verbatim: ``omni-data ingest omat --source DIR`` (alias of omat24)."""
    lay = build("omat24", tmp_path, shared_data, monkeypatch)
    rc, out, err = ingest("omat", tmp_path / "store", capsys, lay.source)
    assert rc == 0, out + err
    assert summary_counts(out) == (8, 7, 1)
    store = Store(tmp_path / "store")
    assert store.catalog.counts["by_task"] == {"omat24": 7}
    check_aselmdb_bulk(store, lay, load_manifest("omat24"), shared_data)
    # the same words typed in a shell, through the installed console script (module run as fallback)
    exe = shutil.which("omni-data")
    cmd = [exe] if exe else [sys.executable, "-m", "omni_data.cli.main"]
    done = subprocess.run(
        [
            *cmd,
            "ingest",
            "omat",
            "--source",
            str(lay.source),
            "--out",
            str(tmp_path / "shell"),
            "--no-cluster",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert summary_counts(done.stdout) == (8, 7, 1)
    assert sorted(r.id for r in Store(tmp_path / "shell")) == sorted(r.id for r in store)


def test_ingest_without_source_uses_configured_copy(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    rc, _, err = ingest("spice", tmp_path / "none", capsys)
    assert rc == 2 and "OMNI_DATA_ROOT" in err and "--source" in err
    root = tmp_path / "data"
    layouts.build_spice(root / "spice", shared_data)
    monkeypatch.setenv("OMNI_DATA_ROOT", str(root))
    rc, out, err = ingest("spice", tmp_path / "store1", capsys)
    assert rc == 0, err
    assert summary_counts(out) == (55, 55, 0)
    elsewhere = layouts.build_omat24(tmp_path / "elsewhere" / "OMAT24", shared_data)
    (tmp_path / "sources.yaml").write_text(f"omat: {elsewhere.source}\n")
    monkeypatch.setenv("OMNI_SOURCES", str(tmp_path / "sources.yaml"))
    rc, out, err = ingest("omat", tmp_path / "store2", capsys)
    assert rc == 0, err
    assert summary_counts(out) == (8, 7, 1)
    assert Store(tmp_path / "store2").catalog.counts["by_dataset"] == {"omat24": 7}
    assert all(str(elsewhere.source) in r.source_file for r in Store(tmp_path / "store2"))


def test_oc20_missing_or_short_txt(tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    lay = build("oc20", tmp_path, shared_data, None)  # type: ignore[arg-type]
    folder = lay.source / "s2ef_train_2M"
    (folder / "0.txt").write_text("random5,frame0,-1.0\n")  # 3 frames, 1 line
    (folder / "1.txt.xz").unlink()
    rc, out, err = ingest("oc20", tmp_path / "store", capsys, lay.source)
    assert rc == 1
    assert "1.extxyz.xz" in out + err and "sidecar_txt" in out + err
    read, written, quarantined = summary_counts(out)
    assert (read, written, quarantined) == (3, 1, 2)
    reasons = Store(tmp_path / "store").quarantine().column("reason").to_pylist()
    assert all(r.startswith("sidecar:") and "0.txt has 1 lines" in r for r in reasons)


def test_bridge_folder_without_job_json_fails_naming_it(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture
) -> None:
    lay = build("bridge", tmp_path, shared_data, None)  # type: ignore[arg-type]
    job = layouts.bridge_job("oc20:s2ef_train_2M/0.extxyz:0")
    (lay.source / job / "job.json").unlink()
    rc, out, err = ingest("bridge", tmp_path / "store", capsys, lay.source)
    assert rc == 1
    assert f"{job}/vasprun.xml" in out + err and "job.json is missing" in out + err
    assert summary_counts(out) == (5, 4, 1)  # the other three folders are stored
