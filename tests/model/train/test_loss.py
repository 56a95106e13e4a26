"""Loss: missing labels are masked (not zero), per-task and record weights, Huber vs MSE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from omni_model.config import LossConfig, TaskLossWeights
from omni_model.data.graph import collate, graph_from_atoms, species_table
from omni_model.train.loss import compute_loss, task_weight_table


def _batch():
    table = species_table([1, 8, 29])
    a = graph_from_atoms(bulk("Cu", "fcc", a=3.6, cubic=True), 3.0, table)
    a.energy, a.forces, a.stress = -12.0, np.zeros((4, 3)), np.zeros(6)
    m = graph_from_atoms(molecule("H2O"), 3.0, table, task=1)
    m.energy, m.forces = None or float("nan"), np.zeros((3, 3))  # energy missing, forces present
    m.weight = 2.0
    return collate([a, m], dtype=torch.float64)


def _pred(b, de=(0.4, 99.0), df=0.1, ds=0.02):
    return {
        "energy": b.energy + torch.tensor(de, dtype=torch.float64),
        "forces": b.forces + df,
        "stress": b.stress + ds,
    }


def test_mse_by_hand():
    b = _batch()
    cfg = LossConfig(kind="mse", energy_weight=1.0, forces_weight=1.0, stress_weight=1.0)
    tw = task_weight_table(cfg, ["a", "b"])
    out = compute_loss(_pred(b), b, cfg, tw)
    # energy: only the bulk has a label: (0.4 / 4 atoms)^2; the molecule's 99 eV error is masked
    assert float(out["energy"]) == pytest.approx((0.4 / 4) ** 2)
    # forces: 12 components weight 1 and 9 components weight 2, each 0.01, over 21 components
    assert float(out["forces"]) == pytest.approx((12 * 0.01 + 9 * 2 * 0.01) / 21)
    # stress only on the periodic cell
    assert float(out["stress"]) == pytest.approx(0.02**2)


def test_per_task_weights_and_huber():
    b = _batch()
    cfg = LossConfig(kind="huber", huber_delta=0.05, per_task={"b": TaskLossWeights(energy=1, forces=3, stress=1)})
    out = compute_loss(_pred(b, df=0.1), b, cfg, task_weight_table(cfg, ["a", "b"]))
    huber = 0.05 * (0.1 - 0.5 * 0.05)  # linear branch, |err| > delta
    assert float(out["forces"]) == pytest.approx((12 * huber + 9 * 2 * 3 * huber) / 21)
    with pytest.raises(ValueError, match="unknown tasks"):
        task_weight_table(LossConfig(per_task={"zzz": TaskLossWeights()}), ["a", "b"])
