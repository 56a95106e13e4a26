"""The demo corpus is computed for real: labels re-computed here with independent calls (ASE EMT,
tblite) and read back with independent readers (ase.db, ase.io, h5py, units converted by hand)."""

from __future__ import annotations

import json

import ase.db
import ase.io
import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT

from omni_data.manifest import load_manifest
from omni_model.demo import generate as gen

HARTREE = 27.211386024367243  # eV, CODATA 2014 as in ase.units
BOHR = 0.5291772105638411  # Å


def _sources(demo_run, family: str, split: str = "train"):
    lay, _ = demo_run
    summary = json.loads((lay.root / "generation.json").read_text())
    return summary["databases"][family]["sources"][split], summary


def test_counts_and_manifests(demo_run) -> None:
    lay, _ = demo_run
    summary = json.loads((lay.root / "generation.json").read_text())
    size = gen.SIZES["ci"]
    dbs = summary["databases"]
    assert dbs["metals"]["counts"] == {"train": size.metals[0], "test": size.metals[1]}
    assert dbs["crystals"]["counts"] == {"train": size.crystals[0], "test": size.crystals[1]}
    assert dbs["molecules"]["counts"]["train"] == size.molecules[0] * size.n_molecules
    tasks = set()
    for family in gen.FAMILIES:
        m = load_manifest(lay.manifests / f"demo-{family}.yaml")
        assert m.format == gen.MANIFESTS[family]["format"] and m.dataset == f"demo_{family}"
        tasks.add(m.task)
    assert tasks == {"metals", "crystals", "molecules"}
    assert len({dbs[f]["method"] for f in gen.FAMILIES}) == 3  # three different methods


def test_metals_db_holds_emt_labels(demo_run) -> None:
    path, _ = _sources(demo_run, "metals")
    rows = list(ase.db.connect(path).select())
    assert len(rows) == gen.SIZES["ci"].metals[0]
    for row in rows[:4]:
        atoms = row.toatoms()
        ref = atoms.copy()
        ref.calc = EMT()
        assert row.energy == pytest.approx(ref.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(row.forces, ref.get_forces(), atol=1e-8)
        np.testing.assert_allclose(row.stress, ref.get_stress(), atol=1e-10)
        assert set(atoms.get_chemical_symbols()) <= set(gen.systems.METALS)


def test_crystals_extxyz_holds_gfn1_labels_with_stress(demo_run) -> None:
    from tblite.ase import TBLite

    path, _ = _sources(demo_run, "crystals")
    frames = ase.io.read(path, ":")
    assert len(frames) == gen.SIZES["ci"].crystals[0]
    atoms = frames[1]
    assert atoms.pbc.all() and len(atoms) == 8
    ref = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
    ref.calc = TBLite(method="GFN1-xTB", verbosity=0)
    assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=1e-6)
    np.testing.assert_allclose(atoms.get_stress(), ref.get_stress(), atol=1e-7)
    # cells sit at GFN1-xTB's own zero pressure before the ±2% strain: |stress| < 10 GPa (16-40 GPa at
    # the experimental lattice constants)
    assert max(np.abs(f.get_stress()[:3]).max() for f in frames) < 10 * 0.006241509


def test_molecules_follow_the_spice_layout_in_atomic_units(demo_run) -> None:
    from tblite.ase import TBLite

    path, _ = _sources(demo_run, "molecules")
    with h5py.File(path, "r") as fh:
        names = sorted(fh)
        assert len(names) == gen.SIZES["ci"].n_molecules
        group = fh["CH4-train"]
        assert group["atomic_numbers"].dtype == np.int16
        assert group["conformations"].attrs["units"] == "bohr"
        assert group["dft_total_energy"].attrs["units"] == "hartree"
        assert group["dft_total_gradient"].attrs["units"] == "hartree/bohr"
        assert group["smiles"][0] == b"C" and group["subset"][0] == b"Omni demo train"
        z = group["atomic_numbers"][()]
        pos_ang = group["conformations"][0].astype(float) * BOHR
        e_ev = group["dft_total_energy"][0] * HARTREE
        f_ev = -group["dft_total_gradient"][0].astype(float) * HARTREE / BOHR
    ref = Atoms(z, pos_ang)
    ref.calc = TBLite(method="GFN2-xTB", verbosity=0)
    # positions were rounded to float32 bohr on write: agreement to ~1e-5 eV, forces to ~1e-4 eV/Å
    assert e_ev == pytest.approx(ref.get_potential_energy(), abs=2e-5)
    np.testing.assert_allclose(f_ev, ref.get_forces(), atol=5e-4)


def test_unknown_size_is_an_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown demo size 'huge'"):
        gen.generate(tmp_path, size="huge")


def test_parallel_labelling_gives_the_same_structures_and_labels() -> None:
    from concurrent.futures import ProcessPoolExecutor

    from omni_model.demo import systems

    def draw(pool):
        rng = np.random.default_rng(7)
        failures: list[str] = []
        out = gen._draw(lambda i: systems.metal_structure(rng, i).atoms, "EMT", 6, "metals", failures, pool)
        assert failures == []
        return out

    serial = draw(None)
    with ProcessPoolExecutor(2) as pool:
        parallel = draw(pool)
    assert [i for i, _ in serial] == [i for i, _ in parallel] == list(range(6))
    for (_, a), (_, b) in zip(serial, parallel):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.get_potential_energy() == b.get_potential_energy()
        ref = a.copy()
        ref.calc = EMT()
        assert a.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)


def test_a_failed_label_is_recorded_and_redrawn() -> None:
    from omni_model.demo import systems

    calls: list[int] = []

    def make(i: int) -> Atoms:
        calls.append(i)
        if i == 1:  # EMT has no parameters for uranium: a real labelling failure
            return Atoms("U2", positions=[[0, 0, 0], [0, 0, 2.5]])
        return systems.metal_structure(np.random.default_rng(i), i).atoms

    failures: list[str] = []
    out = gen._draw(make, "EMT", 3, "metals/test", failures)
    assert [i for i, _ in out] == [0, 2, 3] and calls == [0, 1, 2, 3]
    assert len(failures) == 1 and failures[0].startswith("metals/test[1] U2:")


def test_pool_workers_label_with_one_engine_thread(optional, monkeypatch) -> None:
    """In a pool worker the engine's OpenMP/BLAS pools are capped at one thread while it labels
    (two 2-thread tblite processes on 2 cores labelled 2x slower); the serial path is not capped."""
    optional("tblite", "dft")
    from threadpoolctl import threadpool_info

    from omni_model.demo import systems

    seen: list[int] = []

    def spy(atoms, calc):
        seen.append(max((p["num_threads"] for p in threadpool_info()), default=1))
        return atoms

    monkeypatch.setattr(gen, "label", spy)
    atoms = systems.metal_structure(np.random.default_rng(0), 0).atoms
    assert gen._try_label(("GFN1-xTB", atoms, True)) is atoms
    assert gen._try_label(("GFN1-xTB", atoms, False)) is atoms
    assert seen[0] == 1
    assert seen[1] == max((p["num_threads"] for p in threadpool_info()), default=1)
