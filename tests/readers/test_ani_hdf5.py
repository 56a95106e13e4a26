"""ani_hdf5 reader: real ANI-1x and ANI-2x samples (modelforge) against h5py, and a Transition1x
fixture written to the layout documented in the Transition1x repository
(gitlab.com/matschreiner/Transition1x, ``transition1x/dataloader.py`` and README: ``<split>/
<formula>/<rxn>/`` with ``atomic_numbers``, ``positions`` Å, ``wB97x_6-31G(d).energy`` eV,
``wB97x_6-31G(d).forces`` eV/Å, and ``reactant``/``product``/``transition_state`` subgroups)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from omni_data.readers import ReadOptions
from omni_data.testing import check_reader

HARTREE = 27.211386024367243


def test_ani1x_release_layout(shared_data: Path) -> None:
    path = shared_data / "hdf5" / "modelforge_ani1x_n5.hdf5"
    report = check_reader("ani_hdf5", path, ReadOptions(dataset="ani1x", task="omol"), target=3, expected_records=8)
    rec = next(r for r in report.records if r.id == "ani1x:C1H4N4O4/1")
    with h5py.File(path) as h5:
        g = h5["C1H4N4O4"]
        assert rec.energy == pytest.approx(g["wb97x_dz.energy"][1] * HARTREE, rel=1e-15)
        assert np.allclose(rec.forces, g["wb97x_dz.forces"][1].astype(float) * HARTREE, rtol=1e-12)
        assert np.array_equal(rec.positions, g["coordinates"][1].astype(float))
        assert rec.numbers.tolist() == g["atomic_numbers"][()].tolist()
    assert rec.charge == 0.0 and rec.cell is None
    tz = check_reader("ani_hdf5", path, ReadOptions(dataset="ani1x", task="omol", options={"level": "wb97x_tz"}))
    rec_tz = next(r for r in tz.records if r.id == "ani1x:C1H4N4O4/1")
    assert rec_tz.energy != rec.energy and rec_tz.metadata["level"] == "wb97x_tz"


def test_ani1x_nan_level_is_rejected(shared_data: Path) -> None:
    path = shared_data / "hdf5" / "modelforge_ani1x_n5.hdf5"
    opts = ReadOptions(dataset="ani1x", task="omol", options={"level": "ccsd(t)_cbs"})
    report = check_reader("ani_hdf5", path, opts, expected_records=6, expected_rejected=2)
    assert {r.reason for r in report.rejected} == {"nonfinite:energy"}
    assert all(r.forces is None for r in report.records)  # CCSD(T) has no forces
    with h5py.File(path) as h5:
        n_nan = sum(int(np.isnan(h5[g]["ccsd(t)_cbs.energy"][()]).sum()) for g in h5)
    assert n_nan == 2


def test_ani2x_torchani_layout(shared_data: Path) -> None:
    path = shared_data / "hdf5" / "modelforge_ani2x_minimal.hdf5"
    report = check_reader(
        "ani_hdf5", path, ReadOptions(dataset="ani2x", task="omol"), target=2000, expected_records=5706
    )
    assert report.n_partitions == 3
    rec = report.records[4321]
    assert rec.id == "ani2x:002/4321" and rec.source_index == 4321
    with h5py.File(path) as h5:
        g = h5["002"]
        assert rec.numbers.tolist() == g["species"][4321].tolist()
        assert rec.energy == pytest.approx(g["energies"][4321] * HARTREE, rel=1e-15)
        assert np.allclose(rec.forces, g["forces"][4321] * HARTREE, rtol=1e-12)


def _t1x_fixture(path: Path) -> None:
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as h5:
        for split, rxns in (("train", ("rxn0001", "rxn0002")), ("val", ("rxn0003",)), ("data", ("rxn0001",))):
            for rxn in rxns:
                g = h5.create_group(f"{split}/C2H4O/{rxn}")
                z = np.array([6, 6, 8, 1, 1, 1, 1])
                g["atomic_numbers"] = z
                m = 3
                g["positions"] = rng.normal(size=(m, 7, 3)).astype(np.float32)
                g["wB97x_6-31G(d).energy"] = -4174.0 - np.arange(m, dtype=float)
                g["wB97x_6-31G(d).forces"] = rng.normal(size=(m, 7, 3)).astype(np.float32)
                g["wB97x_6-31G(d).atomization_energy"] = -30.0 - np.arange(m, dtype=float)
                for kind in ("reactant", "product", "transition_state"):
                    s = g.create_group(kind)
                    s["positions"] = rng.normal(size=(1, 7, 3)).astype(np.float32)
                    s["wB97x_6-31G(d).energy"] = np.array([-4170.5])
                    s["wB97x_6-31G(d).forces"] = rng.normal(size=(1, 7, 3)).astype(np.float32)


def test_transition1x_layout(tmp_path: Path) -> None:
    path = tmp_path / "transition1x.h5"
    _t1x_fixture(path)
    # 3 reactions (train, train, val) x (3 path frames + reactant/product/TS); the "data" split is skipped
    report = check_reader("ani_hdf5", path, ReadOptions(dataset="t1x", task="omol"), target=4, expected_records=18)
    ids = report.ids
    assert "t1x:train/C2H4O/rxn0001/2" in ids and "t1x:val/C2H4O/rxn0003/transition_state/0" in ids
    assert not any(i.startswith("t1x:data/") for i in ids)
    ts = next(r for r in report.records if r.id == "t1x:train/C2H4O/rxn0002/transition_state/0")
    assert ts.energy == -4170.5  # already eV: no conversion
    assert ts.numbers.tolist() == [6, 6, 8, 1, 1, 1, 1]  # from the parent reaction group
    assert ts.metadata["kind"] == "transition_state" and ts.metadata["rxn"] == "rxn0002"
    assert ts.metadata["formula"] == "C2H4O"
    with h5py.File(path) as h5:
        frame = next(r for r in report.records if r.id == "t1x:train/C2H4O/rxn0001/1")
        g = h5["train/C2H4O/rxn0001"]
        assert np.array_equal(frame.forces, g["wB97x_6-31G(d).forces"][1].astype(float))
        assert frame.energy == -4175.0 and frame.metadata["kind"] == "path"


# --- damaged files (issue 17 fuzzing) ----------------------------------------------------------


def test_damaged_group_index_is_reader_error_naming_the_file(shared_data: Path, tmp_path: Path) -> None:
    from omni_data.readers import ReaderError, ani_hdf5

    path = tmp_path / "ani1x_damaged.h5"  # every symbol-table node signature overwritten
    path.write_bytes((shared_data / "hdf5" / "modelforge_ani1x_n5.hdf5").read_bytes().replace(b"SNOD", b"XXXX"))
    with pytest.raises(ReaderError, match=r"ani1x_damaged\.h5: damaged HDF5 group index \(RuntimeError"):
        ani_hdf5.partitions(path, 3)


def test_short_energy_dataset_rejects_only_the_conformers_it_lacks(shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "ani1x_short.h5"
    path.write_bytes((shared_data / "hdf5" / "modelforge_ani1x_n5.hdf5").read_bytes())
    with h5py.File(path, "r+") as h5:
        g = h5["C1H6N2O5"]  # 3 conformers; keep the energy of the first only
        first = g["wb97x_dz.energy"][:1]
        del g["wb97x_dz.energy"]
        g["wb97x_dz.energy"] = first
    report = check_reader(
        "ani_hdf5", path, ReadOptions(dataset="ani1x", task="omol"), target=3, expected_records=6, expected_rejected=2
    )
    assert [r.source_id for r in report.rejected] == ["C1H6N2O5/1", "C1H6N2O5/2"]
    assert all(r.reason.startswith("bad_shape:") and "C1H6N2O5" in r.reason for r in report.rejected)
    assert "ani1x:C1H6N2O5/0" in {r.id for r in report.records}
