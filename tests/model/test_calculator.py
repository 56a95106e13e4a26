"""OmniCalculator: ASE results equal the model's own prediction for the chosen task head."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from omni_model import testing
from omni_model.calculator import OmniCalculator
from omni_model.train.checkpoint import load_model
from omni_model.train.trainer import Trainer

from .train.test_trainer import tiny_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, emt_store):
    out = tmp_path_factory.mktemp("calc")
    tr = Trainer(tiny_config(emt_store, out / "r", run={"checkpoint_every": 0}))
    tr.run()
    return out / "r" / "final.pt"


def test_calculator_matches_model_and_tasks_differ(checkpoint):
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms.symbols[0] = "Au"
    atoms.rattle(0.05, seed=2)
    model, _, _ = load_model(checkpoint)
    res = {}
    for task in ("a", "b"):
        atoms.calc = OmniCalculator(str(checkpoint), task=task)
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        ref = testing.predict(model, atoms.copy(), model.task_index(task))
        assert e == pytest.approx(float(ref["energy"]), abs=1e-5)
        np.testing.assert_allclose(f, ref["forces"], atol=1e-5)
        np.testing.assert_allclose(s, ref["stress"], atol=1e-6)
        res[task] = e
    assert abs(res["b"] - res["a"]) > 1e-3  # two heads, two answers


def test_calculator_rejects_unknown_task(checkpoint):
    with pytest.raises(ValueError, match="unknown task 'mpa'"):
        OmniCalculator(str(checkpoint), task="mpa")
