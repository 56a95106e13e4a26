"""Default sanity bounds (issue 22 item 2): real samples pass, unit mistakes do not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omni_data.harmonize.sanity import (
    HARTREE_EV,
    SanityBounds,
    energy_floor,
    sanity_problem,
)
from omni_data.manifest import Filters
from omni_data.readers import ReadOptions
from omni_data.schema import Record, Rejected
from omni_data.testing import read_all

BOUNDS = SanityBounds()

REAL = [  # every shared sample a registered reader reads, with the units its provenance states
    ("asedb", "asedb/fairchem_oxides.db", {}),
    ("asedb", "asedb/schnetpack_test_qm9.db", {"key_map": {"energy": "energy_U0"}}),
    ("aselmdb", "aselmdb/chemreporter_omol25_ani2x_samples.aselmdb", {}),
    ("aselmdb", "aselmdb/chemreporter_omol25_reactivity_samples.aselmdb", {}),
    ("aselmdb", "aselmdb/chemreporter_omol25_rgd_samples.aselmdb", {}),
    ("extxyz", "extxyz/chemreporter_slab_capital_Energy_key.extxyz", {}),
    ("extxyz", "extxyz/chemreporter_spice_amino_acid_ligand_26frames.extxyz", {}),
    ("extxyz", "extxyz/schnetpack_md17_ethanol_2000frames_kcalmol.extxyz", {"energy_unit": "kcal/mol"}),
    ("extxyz", "extxyz/sevennet_hfo2.extxyz", {}),
    ("spice_hdf5", "hdf5/modelforge_SPICE-1.1.4_n2.hdf5", {}),
    ("ani_hdf5", "hdf5/modelforge_ani1x_n5.hdf5", {}),
    ("ani_hdf5", "hdf5/modelforge_ani2x_minimal.hdf5", {}),
    ("pyg_lmdb", "lmdb/matsciml_alexandria_devset_98.lmdb", {}),
    ("pyg_lmdb", "lmdb/matsciml_lips_devset_200.lmdb", {}),
    ("vasp", "vasp/custodian_postprocess_ggau_spin_relax.vasprun.xml", {}),
    ("vasp", "vasp/custodian_lobster_v51_static_nonspin.OUTCAR", {}),
    ("vasp", "vasp/dpdata_6362_relax_truncated.OUTCAR", {}),
    ("vasp", "vasp/dpdata_ch4_md_unconverged.OUTCAR", {}),
    ("vasp", "vasp/dpdata_h2o_md.vasprun.xml", {}),
    ("vasp", "vasp/dpdata_ti_aimd_vasp630.OUTCAR", {}),
    ("vasp", "vasp/fairchem_oc_27998_rpbe_slab.vasprun.xml", {}),
    ("vasp", "vasp/sevennet_hfo2_scan_static_96at_vasp632.OUTCAR", {}),
]


def _records(shared_data: Path, reader: str, rel: str, **kw) -> list[Record]:
    items = read_all(reader, shared_data / rel, ReadOptions(dataset="x", task="t", **kw))
    return [r for r in items if not isinstance(r, Rejected)]


@pytest.mark.parametrize("reader,rel,kw", REAL, ids=[r[1] for r in REAL])
def test_real_samples_pass_the_default_bounds(shared_data: Path, reader: str, rel: str, kw: dict) -> None:
    records = _records(shared_data, reader, rel, **kw)
    assert records
    assert [sanity_problem(r, BOUNDS) for r in records] == [None] * len(records)


def test_the_one_real_frame_outside_the_bounds_is_a_relaxation_overshoot(shared_data: Path) -> None:
    """CHGNet's NbOC relaxation (VASP 5.4.4): ionic step 1 put two atoms 0.109 Å apart; VASP
    reported +620 eV/atom, |F| 28,851 eV/Å and 13,848 kBar. That frame, and only it, is out."""
    records = _records(shared_data, "vasp", "vasp/chgnet_nboc_relax_49steps.vasprun.xml")
    assert len(records) == 49
    out = {i: why for i, r in enumerate(records) if (why := sanity_problem(r, BOUNDS)) is not None}
    assert list(out) == [1] and out[1].startswith("implausible:stress |σ|=8.643 eV/Å³ (1385 GPa, component 0)")
    no_stress = records[1]
    no_stress.stress = None
    assert sanity_problem(no_stress, BOUNDS).startswith("implausible:forces |F|=2.885e+04 eV/Å on atom")
    no_stress.forces = None
    assert sanity_problem(no_stress, BOUNDS).startswith("implausible:energy 620.572 eV/atom > +100 eV/atom")


def test_the_md17_kcal_per_mol_file_read_as_ev_is_caught(shared_data: Path) -> None:
    """The same real ethanol frames with the unit left out: -97195 "eV" for C2H6O is below any
    all-electron total of those atoms (-7206 eV)."""
    records = _records(shared_data, "extxyz", "extxyz/schnetpack_md17_ethanol_2000frames_kcalmol.extxyz")
    why = sanity_problem(records[0], BOUNDS)
    assert why is not None and why.startswith("implausible:energy -97195") and "kcal/mol" in why
    assert energy_floor(records[0].numbers) == pytest.approx(-HARTREE_EV * (2 * 6 ** (7 / 3) + 6 + 8 ** (7 / 3)))


def _molecule(symbols: list[int], energy: float, kind: str = "total") -> Record:
    n = len(symbols)
    pos = np.array([[1.5 * i, 0.0, 0.0] for i in range(n)])
    return Record(
        numbers=np.array(symbols), positions=pos, id="m:1", dataset="m", task="t", energy=energy, energy_kind=kind
    )


@pytest.mark.parametrize("z,total_ha", [(6, -37.6886), (8, -74.8094), (54, -7446.9), (86, -23602.0), (92, -28001.0)])
def test_energy_floor_is_below_all_electron_atomic_totals(z: int, total_ha: float) -> None:
    """Hartree-Fock (C, O) and Dirac-Fock (Xe, Rn, U) atomic totals lie above -Z^(7/3) Ha."""
    assert energy_floor(np.array([z])) < total_ha * HARTREE_EV
    assert sanity_problem(_molecule([z], total_ha * HARTREE_EV), BOUNDS) is None


def test_all_electron_uf6_passes_and_the_same_number_in_kcal_per_mol_does_not() -> None:
    total_ev = (-28001.0 + 6 * -99.7) * HARTREE_EV  # about -778,000 eV, relativistic all-electron
    assert sanity_problem(_molecule([92, 9, 9, 9, 9, 9, 9], total_ev), BOUNDS) is None
    kcal = total_ev / 0.04336410390059322
    assert sanity_problem(_molecule([92, 9, 9, 9, 9, 9, 9], kcal), BOUNDS).startswith("implausible:energy")


def test_energy_bounds_depend_on_the_energy_kind() -> None:
    assert sanity_problem(_molecule([14, 14], 2 * 99.0), BOUNDS) is None
    assert sanity_problem(_molecule([14, 14], 2 * 101.0), BOUNDS).startswith("implausible:energy 101 eV/atom")
    assert sanity_problem(_molecule([14, 14], -2 * 5.0, "referenced"), BOUNDS) is None
    why = sanity_problem(_molecule([14, 14], -2 * 150.0, "referenced"), BOUNDS)
    assert why.startswith("implausible:energy -150 eV/atom, a referenced energy beyond ±100")
    assert sanity_problem(_molecule([14, 14], -2 * 150.0, "total"), BOUNDS) is None  # a total may be that low


def test_force_and_stress_bounds_and_manifest_filters_widen_them() -> None:
    rec = _molecule([29, 29], -7.0)
    rec.forces = np.array([[0.0, 0.0, 999.0], [0.0, 0.0, -999.0]])
    assert sanity_problem(rec, BOUNDS) is None
    rec.forces[1, 2] = -1200.0
    assert sanity_problem(rec, BOUNDS).startswith("implausible:forces |F|=1200 eV/Å on atom 1 > 1000")
    rec.forces = None
    rec.stress = np.array([0.0, 0.0, 0.0, 0.0, -1.5, 0.0])
    assert sanity_problem(rec, BOUNDS).startswith("implausible:stress |σ|=1.5 eV/Å³ (240.3 GPa, component 4)")
    wide = BOUNDS.widened(Filters(max_stress=2.0, max_force=5000.0))
    assert (wide.max_stress, wide.max_force) == (2.0, 5000.0) and sanity_problem(rec, wide) is None
    assert BOUNDS.widened(Filters(max_stress=0.5)) == BOUNDS  # a stricter filter does not tighten the bound
