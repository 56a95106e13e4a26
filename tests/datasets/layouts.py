"""Builders of small local copies of each database's download layout, for end-to-end ingest tests.

Each ``build_<manifest>(root, shared)`` writes under ``root`` a directory tree whose file names
and nesting follow the published release (documented in ``LAYOUTS[name].doc``), filled with real
sample files from ``shared/data`` copied under their release names where one exists in that
format, and otherwise with records written by the fixture generators of ``tests/readers``
(which follow each format's published field layout) or by ASE itself. Nothing here is committed
data: every tree lives in pytest's ``tmp_path``.
"""

from __future__ import annotations

import importlib.util
import lzma
import pickle
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

READER_TESTS = Path(__file__).resolve().parents[1] / "readers"


def load_test_module(name: str) -> ModuleType:
    """Import ``tests/readers/<name>.py`` by path (pytest runs with ``--import-mode=importlib``)."""
    key = f"_omni_layouts_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, READER_TESTS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:  # e.g. its importorskip: the next caller must skip too, not get half a module
            del sys.modules[key]
            raise
    return sys.modules[key]


@dataclass(frozen=True)
class Layout:
    """One database's local tree: where to point ``--source`` and where the layout is documented."""

    source: Path
    files: tuple[Path, ...]
    doc: str


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


# --------------------------------------------------------------------------- periodic EMT frames
def emt_bulk_frames(n: int, seed: int, big_force_at: int | None = None) -> list:
    """``n`` rattled fcc Cu/Al/Ni supercells with EMT energy, forces and stress (ASE sign, eV/Å³).

    Frame ``big_force_at`` gets a 200 eV/Å force on atom 0 so the ``max_force`` filter has
    something real to quarantine.
    """
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        el, a = [("Cu", 3.61), ("Al", 4.05), ("Ni", 3.52)][i % 3]
        atoms = bulk(el, "fcc", a=a * (1 + 0.01 * (i % 4)), cubic=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        if i == big_force_at:
            forces = forces.copy()
            forces[0] = [200.0, 0.0, 0.0]
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
        frames.append(atoms)
    return frames


def _write_aselmdb(path: Path, frames: list, sids: list[str]) -> Path:
    from ase_db_backends.aselmdb import LMDBDatabase

    path.parent.mkdir(parents=True, exist_ok=True)
    db = LMDBDatabase(path)
    for atoms, sid in zip(frames, sids):
        db.write(atoms, data={"sid": sid})
    db.close()
    return path


# --------------------------------------------------------------------------- fairchem aselmdb
def build_omat24(root: Path, shared: Path) -> Layout:
    files = []
    for k, sub in enumerate(["rattled-1000", "aimd-from-PBE-1000-npt"]):
        frames = emt_bulk_frames(4, seed=10 + k, big_force_at=1 if k == 0 else None)
        files.append(_write_aselmdb(root / sub / "data.0000.aselmdb", frames, [f"agm00{k}{i:05d}" for i in range(4)]))
    return Layout(
        root,
        tuple(files),
        "OMat24 train/<subdataset>.tar.gz extracted: <subdataset>/data.NNNN.aselmdb "
        "(fairchem docs 'OMat24 dataset', huggingface.co/datasets/fairchem/OMAT24)",
    )


def build_salex(root: Path, shared: Path) -> Layout:
    files = []
    for k, split in enumerate(["train", "val"]):
        frames = emt_bulk_frames(3, seed=20 + k)
        files.append(_write_aselmdb(root / split / "data.0000.aselmdb", frames, [f"alex{k}{i:04d}" for i in range(3)]))
    return Layout(
        root,
        tuple(files),
        "sAlex/train.tar.gz and sAlex/val.tar.gz extracted: train/*.aselmdb, "
        "val/*.aselmdb (huggingface.co/datasets/fairchem/OMAT24, sAlex folder)",
    )


def build_omol25(root: Path, shared: Path) -> Layout:
    names = [
        "chemreporter_omol25_ani2x_samples",
        "chemreporter_omol25_reactivity_samples",
        "chemreporter_omol25_rgd_samples",
    ]
    files = [
        _copy(shared / "aselmdb" / f"{n}.aselmdb", root / "train_4M" / f"data{i:04d}.aselmdb")
        for i, n in enumerate(names)
    ]
    return Layout(
        root,
        tuple(files),
        "OMol25 train_4M.tar.gz extracted: train_4M/dataNNNN.aselmdb "
        "(huggingface.co/facebook/OMol25, DATASET.md); real OMol25 rows from shared/data/aselmdb",
    )


# --------------------------------------------------------------------------- pickled PyG LMDB
def _pyg_values(module: ModuleType, monkeypatch, n: int, seed: int, oc22: bool) -> list[bytes]:
    """Pickled PyG 2 ``Data`` objects (the stand-in classes of tests/readers/test_pyg_lmdb.py)."""
    Data, GlobalStorage = module._fake_pyg(monkeypatch)
    rng = np.random.default_rng(seed)
    values = []
    for i in range(n):
        frame = module._oc20_frame(rng, i)
        frame["y"] = float(-300.0 - 5 * i)  # S2EF-total: the raw DFT total energy
        frame["sid"] = 100 * seed + i // 2  # system ids differ between splits, as in the release
        if oc22:
            frame["oc22"] = 1
        d = Data.__new__(Data)
        store = GlobalStorage.__new__(GlobalStorage)
        store.__dict__.update({"_mapping": frame, "_parent": d})
        d.__dict__.update(
            {"_store": store, "_tensor_attr_cls": Data.attr_classes[0], "_edge_attr_cls": Data.attr_classes[1]}
        )
        values.append(pickle.dumps(d, protocol=-1))
    return values


def _pyg_tree(root: Path, monkeypatch, splits: dict[str, int], oc22: bool) -> list[Path]:
    module = load_test_module("test_pyg_lmdb")
    files = []
    for k, (split, n) in enumerate(splits.items()):
        path = root / "s2ef" / split / "data.0000.lmdb"
        path.parent.mkdir(parents=True, exist_ok=True)
        module._write_lmdb(path, _pyg_values(module, monkeypatch, n, 30 + k, oc22))
        files.append(path)
    return files


def build_oc22(root: Path, shared: Path, monkeypatch=None) -> Layout:
    files = _pyg_tree(root, monkeypatch, {"train": 5, "val_id": 3}, oc22=True)
    return Layout(
        root,
        tuple(files),
        "OC22 S2EF-total LMDBs extracted: s2ef/<split>/data.NNNN.lmdb of pickled PyG Data "
        "(fairchem docs 'OC22 dataset'; LmdbDataset)",
    )


def build_odac23(root: Path, shared: Path, monkeypatch=None) -> Layout:
    files = _pyg_tree(root, monkeypatch, {"train": 4, "val": 2}, oc22=False)
    return Layout(
        root,
        tuple(files),
        "ODAC23 S2EF LMDBs extracted: s2ef/<split>/data.NNNN.lmdb of pickled PyG Data (fairchem docs 'ODAC23 dataset')",
    )


# --------------------------------------------------------------------------- OC20 S2EF extxyz.xz + txt
def oc20_frames(shared: Path) -> list:
    """The real OC20-style ReIr3 slab (fairchem vasprun, RPBE) plus two EMT Cu(111)+O frames."""
    from ase.build import add_adsorbate, fcc111
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixAtoms
    from ase.io import read

    frames = [read(shared / "vasp" / "fairchem_oc_27998_rpbe_slab.vasprun.xml", index=-1)]
    for h in (1.6, 1.9):
        slab = fcc111("Cu", size=(2, 2, 3), vacuum=7.0)
        add_adsorbate(slab, "O", h, "fcc")
        slab.info.pop("adsorbate_info", None)  # a dict: not written to extxyz
        slab.set_tags([2 if s == "O" else 1 for s in slab.get_chemical_symbols()])
        slab.set_constraint(FixAtoms(indices=[a.index for a in slab if a.position[2] < 9.0]))
        slab.calc = EMT()
        e, f = slab.get_potential_energy(), slab.get_forces(apply_constraint=False)
        slab.calc = SinglePointCalculator(slab, energy=e, forces=f)
        frames.append(slab)
    return frames


def build_oc20(root: Path, shared: Path) -> Layout:
    from ase.io import write

    out = root / "s2ef_train_2M"
    out.mkdir(parents=True)
    frames = oc20_frames(shared)
    files = []
    chunks = {"0": frames, "1": frames[1:]}
    for stem, chunk in chunks.items():
        xyz = out / f"{stem}.extxyz"
        write(xyz, chunk, format="extxyz")
        packed = out / f"{stem}.extxyz.xz"
        packed.write_bytes(lzma.compress(xyz.read_bytes()))
        xyz.unlink()
        lines = "".join(
            f"random{1000 + 7 * int(stem) + i},frame{3 * i + 1},{-0.5 - 0.25 * i - int(stem):.6f}\n"
            for i in range(len(chunk))
        )
        txt = out / f"{stem}.txt"
        if stem == "1":  # the download ships .txt.xz; uncompress_ef.py leaves .txt: both occur
            txt = out / f"{stem}.txt.xz"
            txt.write_bytes(lzma.compress(lines.encode()))
        else:
            txt.write_text(lines)
        files += [packed, txt]
    return Layout(
        root,
        tuple(files),
        "OC20 S2EF s2ef_train_2M.tar extracted: s2ef_train_2M/<n>.extxyz.xz with <n>.txt[.xz] "
        "(random<sid>,frame<fid>,<reference energy> per frame) beside each (fairchem docs "
        "'OC20 dataset', S2EF download; preprocess_ef.py)",
    )


# --------------------------------------------------------------------------- extxyz releases
def build_mad(root: Path, shared: Path) -> Layout:
    from ase.io import write

    train = _copy(shared / "extxyz" / "sevennet_hfo2.extxyz", root / "mad-train.xyz")
    val = root / "mad-val.xyz"
    write(val, emt_bulk_frames(2, seed=40), format="extxyz")
    return Layout(
        root,
        (train, val),
        "MAD release (Materials Cloud archive 2025.1, PET-MAD): mad-train.xyz, "
        "mad-val.xyz, mad-test.xyz extended XYZ with energy, forces, stress",
    )


def mp_aloe_entries() -> list[dict]:
    """MP-ALOE-layout entries: MatPES's record layout keyed by ``mp_aloe_id``, r2SCAN, some without an MP parent.

    Built from ``test_matpes_json._entries`` (its broken entry 5 dropped); entry 3 carries a 200 eV/Å
    force so the manifest's ``max_force`` filter quarantines it. The id strings are made up here: the
    real MP-ALOE id format was not checked against a release record.
    """
    module = load_test_module("test_matpes_json")
    entries = [e for i, e in enumerate(module._entries(7)) if i != 5]
    out = []
    for i, entry in enumerate(entries):
        entry = {("mp_aloe_id" if k == "matpes_id" else k): v for k, v in entry.items()}
        entry["mp_aloe_id"] = f"aloe-{1000 + i}"
        entry["functional"] = "r2SCAN"
        if i % 3 == 1:  # not derived from an MP structure: original_mp_id is null
            entry["provenance"] = {"original_mp_id": None}
        if i == 3:
            entry["forces"][0][0] = 200.0
        out.append(entry)
    return out


def build_mp_aloe(root: Path, shared: Path) -> Layout:
    import gzip
    import json

    root.mkdir(parents=True, exist_ok=True)
    path = root / "MP_ALOE_data.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(e) + "\n" for e in mp_aloe_entries()).encode()))
    return Layout(
        root,
        (path,),
        "MP-ALOE figshare 10.6084/m9.figshare.29452190: MP_ALOE_data.jsonl.gz, one "
        "gzipped JSON line per entry in MatPES's layout with id key mp_aloe_id (mp_aloe manifest notes)",
    )


# --------------------------------------------------------------------------- JSON releases
def build_mptrj(root: Path, shared: Path) -> Layout:
    module = load_test_module("test_mptrj_json")
    path = root / "MPtrj_2022.9_full.json"
    root.mkdir(parents=True, exist_ok=True)
    module._fixture(path, None)
    return Layout(
        root,
        (path,),
        "MPtrj figshare 23713842: MPtrj_2022.9_full.json, one object "
        "{mp_id: {frame_id: {structure, uncorrected_total_energy, force, stress (kBar), magmom, ...}}} "
        "(CHGNet chgnet/data/dataset.py StructureJsonData)",
    )


def build_mp_r2scan(root: Path, shared: Path) -> Layout:
    module = load_test_module("test_mptrj_json")
    path = root / "MP-r2SCAN_trajectories.json"
    root.mkdir(parents=True, exist_ok=True)
    module._fixture(path, 1)
    return Layout(root, (path,), "MP r2SCAN trajectories in MPtrj's nested JSON layout (manifest mp_r2scan)")


def _matpes(root: Path, name: str) -> Layout:
    import gzip
    import json

    module = load_test_module("test_matpes_json")
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_bytes(gzip.compress(json.dumps(module._entries(8)).encode()))
    return Layout(
        root,
        (path,),
        f"MatPES release (matpes.ai/dataset): {name}, a gzipped JSON list of entries "
        "(matpes_id, structure, energy, forces, stress kBar, magmoms, provenance.original_mp_id)",
    )


def build_matpes_pbe(root: Path, shared: Path) -> Layout:
    return _matpes(root, "MatPES-PBE-2025.1.json.gz")


def build_matpes_r2scan(root: Path, shared: Path) -> Layout:
    return _matpes(root, "MatPES-R2SCAN-2025.1.json.gz")


# --------------------------------------------------------------------------- HDF5 / TFRecord
def build_spice(root: Path, shared: Path) -> Layout:
    path = _copy(shared / "hdf5" / "modelforge_SPICE-1.1.4_n2.hdf5", root / "SPICE-2.0.1.hdf5")
    return Layout(
        root,
        (path,),
        "SPICE Zenodo 10975225: SPICE-2.0.1.hdf5, one group per molecule "
        "(openmm/spice-dataset README); real SPICE groups from shared/data/hdf5",
    )


def build_qcml(root: Path, shared: Path) -> Layout:
    module = load_test_module("test_qcml")
    folder = root / "qcml" / "dft_force_field" / "1.0.0"
    folder.mkdir(parents=True)
    mols = module._molecules(7, force_scale=0.05)  # the manifest reads Hartree/Bohr: keep |F| < 50 eV/Å
    files = []
    for k, chunk in enumerate([mols[:4], mols[4:]]):
        path = folder / f"qcml-train.tfrecord-{k:05d}-of-00002"
        module._write(path, chunk)
        files.append(path)
    for meta in ("dataset_info.json", "features.json"):  # TFDS writes these beside the shards; not data
        (folder / meta).write_text("{}")
    return Layout(
        root,
        tuple(files),
        "QCML as a TFDS build (zenodo 14859804; tensorflow_datasets naming "
        "<name>-<split>.tfrecord-NNNNN-of-MMMMM under <name>/<config>/<version>/)",
    )


# --------------------------------------------------------------------------- bridge job folders
BRIDGE_RUNS: dict[str, tuple[str, str]] = {  # source record id -> (its task, real vasprun standing in for the run)
    "mptrj:mp-1000/mp-1000-0-1": ("mpa", "custodian_lobster_v51_static_nonspin.vasprun.xml"),
    "oc20:s2ef_train_2M/0.extxyz:0": ("oc20", "fairchem_oc_27998_rpbe_slab.vasprun.xml"),
    "mad:mad-train.xyz:1": ("pet_mad", "dpdata_h2o_md.vasprun.xml"),
    "salex:train/data.0000.aselmdb:3": ("mpa", "custodian_unconverged_scan_static.vasprun.xml"),
}


def bridge_job(record_id: str) -> str:
    """The folder name emit-jobs gives a record (``omni_data.recompute.emit.job_name``)."""
    from omni_data.safeio import safe_name

    return safe_name(record_id)


def build_bridge(root: Path, shared: Path) -> Layout:
    import json

    files = []
    for record_id, (task, src) in BRIDGE_RUNS.items():
        folder = root / bridge_job(record_id)
        files.append(_copy(shared / "vasp" / src, folder / "vasprun.xml"))
        job = {
            "job": folder.name,
            "record_id": record_id,
            "source_task": task,
            "dataset": record_id.split(":")[0],
            "protocol": "mp-pbe-static",
            "engine": "vasp",
            "status": "done",
        }
        (folder / "job.json").write_text(json.dumps(job))
        files.append(folder / "job.json")
    return Layout(
        root,
        tuple(files),
        "omni-data emit-jobs output after the runs: one folder per picked record "
        "(named omni_data.recompute.emit.job_name(record id)) holding job.json and the run's vasprun.xml",
    )


BUILDERS: dict[str, Callable[..., Layout]] = {
    "mptrj": build_mptrj,
    "salex": build_salex,
    "omat24": build_omat24,
    "matpes_pbe": build_matpes_pbe,
    "matpes_r2scan": build_matpes_r2scan,
    "mp_aloe": build_mp_aloe,
    "mp_r2scan": build_mp_r2scan,
    "oc20": build_oc20,
    "oc22": build_oc22,
    "odac23": build_odac23,
    "omol25": build_omol25,
    "spice": build_spice,
    "qcml": build_qcml,
    "mad": build_mad,
    "bridge": build_bridge,
}
NEEDS_MONKEYPATCH = {"oc22", "odac23"}
