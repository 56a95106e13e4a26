"""Per-task validation on real sample data (SevenNet's HfO2 SCAN frames, MD17 ethanol in
kcal/mol) stored in an Omni store: MAEs equal the ones worked out from calculator predictions."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.io import read

from omni_model.calculator import OmniCalculator
from omni_model.config import config_from_dict
from omni_model.data.dataset import GraphDataset, store_columns
from omni_model.train.trainer import Trainer
from omni_model.train.validate import evaluate

KCAL = units.kcal / units.mol  # kcal/mol -> eV


@pytest.fixture(scope="module")
def real_store(tmp_path_factory, shared_data):
    from omni_data.schema import Record
    from omni_data.store import write_shard

    recs = []
    hfo2 = read(shared_data / "extxyz" / "sevennet_hfo2.extxyz", ":")
    for i, a in enumerate(hfo2):
        recs.append(
            Record(
                numbers=a.numbers,
                positions=a.positions,
                cell=a.cell.array,
                pbc=a.pbc,
                id=f"hfo2:{i}",
                dataset="hfo2",
                task="scan",
                energy=a.get_potential_energy(),
                forces=a.get_forces(),
                stress=a.get_stress(),
            ).normalized()
        )
    eth = read(shared_data / "extxyz" / "schnetpack_md17_ethanol_2000frames_kcalmol.extxyz", ":12")
    for i, a in enumerate(eth):
        recs.append(
            Record(
                numbers=a.numbers,
                positions=a.positions,
                id=f"md17:{i}",
                dataset="md17",
                task="pbe_ts",
                energy=a.get_potential_energy() * KCAL,
                forces=a.get_forces() * KCAL,
            ).normalized()
        )
    path = tmp_path_factory.mktemp("real") / "store"
    write_shard(path, "p0", recs)
    return path, hfo2, eth


def test_validation_maes_match_calculator_predictions(real_store, tmp_path):
    path, hfo2, eth = real_store
    cfg = config_from_dict(
        {
            "model": {"channels": 8, "lmax": 1, "num_layers": 2, "cutoff": 4.0, "radial_hidden": [8]},
            "data": {"store": str(path), "batch_size": 2, "valid_fraction": 0.0},
            "run": {"out_dir": str(tmp_path / "run"), "progress": False, "checkpoint_every": 0},
            "stages": [{"name": "s", "steps": 3}],
        }
    )
    tr = Trainer(cfg)
    tr.run()
    assert tr.model.tasks == ["pbe_ts", "scan"] and tr.model.elements == [1, 6, 8, 72]
    from omni_data.store import Store

    store = Store(path)
    ds = GraphDataset(
        store, np.arange(len(store)), 4.0, tr.model.elements, tr.model.tasks, store_columns(store)["task"]
    )
    errors = evaluate(tr.model, ds, tr.model.tasks, batch_size=5)
    ckpt = tmp_path / "run" / "final.pt"
    by_hand = {}
    for task, frames, scale in (("scan", hfo2, 1.0), ("pbe_ts", eth, KCAL)):
        calc = OmniCalculator(str(ckpt), task=task)
        e_err, f_err, s_err = [], [], []
        for a in frames:
            ref_e, ref_f = a.get_potential_energy() * scale, a.get_forces() * scale
            ref_s = a.get_stress() if a.pbc.all() else None
            b = a.copy()
            b.calc = calc
            e_err.append(abs(b.get_potential_energy() - ref_e) / len(a))
            f_err.append(np.abs(b.get_forces() - ref_f).ravel())
            if ref_s is not None:
                s_err.append(np.abs(b.get_stress() - ref_s))
        by_hand[task] = (
            np.mean(e_err),
            np.mean(np.concatenate(f_err)),
            np.mean(np.concatenate(s_err)) if s_err else float("nan"),
        )
    for task, (e, f, s) in by_hand.items():
        got = errors[task]
        assert got["energy_mae_per_atom"] == pytest.approx(e, rel=1e-4, abs=1e-6)
        assert got["forces_mae"] == pytest.approx(f, rel=1e-4, abs=1e-6)
        if np.isnan(s):
            assert np.isnan(got["stress_mae"])  # molecules have no stress label
        else:
            assert got["stress_mae"] == pytest.approx(s, rel=1e-4, abs=1e-8)
    assert errors["scan"]["n"] == 2 and errors["pbe_ts"]["n"] == 12
