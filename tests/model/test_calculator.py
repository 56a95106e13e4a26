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


def finite_difference_forces(atoms, h: float = 1e-4) -> np.ndarray:
    """-dE/dx by central differences of the calculator's energy, every atom and direction."""
    forces = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            energies = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.calc = atoms.calc
                moved.positions[i, k] += sign * h
                energies.append(moved.get_potential_energy())
            forces[i, k] = -(energies[0] - energies[1]) / (2 * h)
    return forces


def test_float64_finite_differences_match_autograd_forces(checkpoint):
    """Issue 20 item 9: in float64 central differences reproduce the model's forces to 1e-6 eV/Å;
    in float32 (the checkpoint's precision) rounding of the energy alone makes them worse."""
    import torch

    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms.symbols[0] = "Au"
    atoms.rattle(0.05, seed=3)
    error = {}
    for dtype in ("float64", "float32"):
        atoms.calc = OmniCalculator(str(checkpoint), task="a", dtype=dtype)
        assert atoms.calc.dtype == getattr(torch, dtype)
        assert next(atoms.calc.model.parameters()).dtype == getattr(torch, dtype)
        autograd = atoms.get_forces()
        assert np.abs(autograd).max() > 1e-3  # a real test: the forces are not all zero
        error[dtype] = float(np.abs(finite_difference_forces(atoms) - autograd).max())
    assert error["float64"] < 1e-6, error
    assert error["float32"] > 100 * error["float64"], error
    default = OmniCalculator(str(checkpoint), task="a")
    assert default.dtype == torch.float32  # the checkpoint was trained in fp32


def test_float64_energy_agrees_with_float32(checkpoint):
    """The same weights in two precisions: energies agree to float32 rounding."""
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms.rattle(0.05, seed=4)
    e = {}
    for dtype in ("float32", "float64"):
        atoms.calc = OmniCalculator(str(checkpoint), task="b", dtype=dtype)
        e[dtype] = atoms.get_potential_energy()
    assert e["float64"] == pytest.approx(e["float32"], abs=1e-4)


def test_unknown_keywords_are_type_errors_naming_the_key(checkpoint):
    with pytest.raises(TypeError, match="'default_dtype'"):
        OmniCalculator(str(checkpoint), task="a", default_dtype="float64")
    with pytest.raises(ValueError, match="dtype must be one of float32, float64, got 'float16'"):
        OmniCalculator(str(checkpoint), task="a", dtype="float16")
    calc = OmniCalculator(str(checkpoint), task="a", label="omni")  # ASE's own keywords still work
    assert calc.label == "omni" and calc.parameters == {}
