"""spice_hdf5 reader on the real modelforge SPICE 1.1.4 sample, checked against h5py by hand."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from omni_data.readers import ReadOptions, spice_hdf5
from omni_data.testing import check_reader

HARTREE = 27.211386024367243  # eV
BOHR = 0.5291772105638411  # Å


@pytest.fixture()
def spice(shared_data: Path) -> Path:
    return shared_data / "hdf5" / "modelforge_SPICE-1.1.4_n2.hdf5"


def test_values_against_h5py(spice: Path) -> None:
    report = check_reader(
        "spice_hdf5", spice, ReadOptions(dataset="spice", task="omol"), target=20, expected_records=55
    )
    assert report.n_partitions == 3
    by_id = {r.id: r for r in report.records}
    with h5py.File(spice) as h5:
        g = h5["103147721"]
        e_hartree = g["dft_total_energy"][7]
        rec = by_id["spice:103147721/7"]
        assert rec.energy == pytest.approx(e_hartree * HARTREE, rel=1e-15)
        assert e_hartree == -370.4100270953332
        assert rec.energy == pytest.approx(-10079.370234587, abs=1e-8)  # -370.4100270953332 Ha * 27.211386 eV/Ha
        assert np.allclose(rec.positions, g["conformations"][7].astype(float) * BOHR, rtol=1e-12)
        assert np.allclose(rec.forces, -g["dft_total_gradient"][7].astype(float) * HARTREE / BOHR, rtol=1e-12)
        assert rec.numbers.tolist() == g["atomic_numbers"][()].tolist()
        assert rec.charge == 1.0  # one [N+:9] in the SMILES
        assert rec.cell is None and not rec.pbc.any()
        assert rec.metadata["subset"] == "SPICE PubChem Set 6 Single Points Dataset v1.2"
        assert rec.metadata["formation_energy"] == pytest.approx(g["formation_energy"][7] * HARTREE)
        na = by_id["spice:C#C.[Na+]/4"]
        assert na.charge == 1.0 and na.source_index == 54 and na.n_atoms == 5
        assert na.energy == pytest.approx(h5["C#C.[Na+]"]["dft_total_energy"][4] * HARTREE, rel=1e-15)


def test_subset_filter_rejects(spice: Path) -> None:
    opts = ReadOptions(
        dataset="spice", task="omol", options={"subsets": ["SPICE DES370K Single Points Dataset Supplement v1.0"]}
    )
    report = check_reader("spice_hdf5", spice, opts, expected_records=5, expected_rejected=50)
    assert set(r.reason for r in report.rejected) == {"filter:subset SPICE PubChem Set 6 Single Points Dataset v1.2"}


@pytest.mark.parametrize(
    "smiles,charge",
    [
        ("[H:10][C:1]1([N+:9]([H:25])([H:26])[H:27])C1", 1),
        ("[O-]C(=O)C[NH3+]", 0),
        ("[Fe+3]", 3),
        ("[Mg++]", 2),
        ("[O--]", -2),
        ("[Cu+2].[Cl-].[Cl-]", 0),
        ("[2H:1]C", 0),
        ("C[C@@H](N)O", 0),
        ("[S-2]", -2),
    ],
)
def test_smiles_charge(smiles: str, charge: int) -> None:
    assert spice_hdf5.smiles_charge(smiles) == charge


# --- damaged files (issue 17 fuzzing) ----------------------------------------------------------


def test_damaged_group_index_is_reader_error_naming_the_file(spice: Path, tmp_path: Path) -> None:
    from omni_data.readers import ReaderError

    path = tmp_path / "SPICE_damaged.hdf5"  # every symbol-table node signature overwritten
    path.write_bytes(spice.read_bytes().replace(b"SNOD", b"XXXX"))
    with pytest.raises(ReaderError, match=r"SPICE_damaged\.hdf5: damaged HDF5 group index \(RuntimeError"):
        spice_hdf5.partitions(path, 10)


def test_short_energy_dataset_rejects_only_the_conformers_it_lacks(spice: Path, tmp_path: Path) -> None:
    path = tmp_path / "SPICE_short.hdf5"
    path.write_bytes(spice.read_bytes())
    with h5py.File(path, "r+") as h5:
        g = h5["C#C.[Na+]"]  # 5 conformers; keep the energies of the first 3
        first = g["dft_total_energy"][:3]
        del g["dft_total_energy"]
        g["dft_total_energy"] = first
    report = check_reader(
        "spice_hdf5",
        path,
        ReadOptions(dataset="spice", task="omol"),
        target=20,
        expected_records=53,
        expected_rejected=2,
    )
    assert [r.source_id for r in report.rejected] == ["C#C.[Na+]/3", "C#C.[Na+]/4"]
    assert all(r.reason.startswith("bad_shape:") for r in report.rejected)
