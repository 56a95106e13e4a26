"""Symmetry, autograd forces/stress and the θ_T/θ_C partition of OmniModel (float64, tiny)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from e3nn import o3

from omni_model import testing
from omni_model.nn.embedding import ElementEmbedding
from omni_model.nn.shift_scale import ShiftScale
from omni_model.nn.task_linear import TaskLinear

from .conftest import small_model


def _bulk():
    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    a.symbols[1] = "Au"
    a.symbols[2] = "Pt"
    a.set_cell(a.cell.array @ np.array([[1.0, 0.05, 0.0], [0.0, 1.02, 0.03], [0.01, 0.0, 0.97]]), scale_atoms=True)
    a.rattle(0.1, seed=3)
    return a


def _cluster():
    a = molecule("CH4")
    a.set_chemical_symbols(["Pt", "Cu", "Cu", "Au", "Au"])
    a.positions *= 2.2
    return a


@pytest.mark.parametrize("make", [_bulk, _cluster])
@pytest.mark.parametrize("parity", [True, False])
def test_rotation_translation_permutation(make, parity):
    model = small_model(parity=parity)
    atoms = make()
    torch.manual_seed(1)
    rot = o3.rand_matrix(dtype=torch.float64).numpy()
    for task in (0, 1):
        testing.assert_rotation_equivariant(model, atoms, rot, task=task)
        testing.assert_translation_invariant(model, atoms, np.array([0.3, -1.2, 2.5]), task=task)
        testing.assert_permutation_equivariant(
            model, atoms, np.random.default_rng(0).permutation(len(atoms)), task=task
        )
    if parity:  # full O(3): inversion is a symmetry too
        testing.assert_rotation_equivariant(model, atoms, -rot)


def test_se3_model_is_not_inversion_invariant_by_accident():
    """Sanity check that the equivariance tests can fail: a chiral cluster under inversion."""
    model = small_model(parity=False, seed=2, num_layers=3)  # chirality needs 3 hops
    atoms = _cluster()
    atoms.positions[1] += [0.3, 0.1, -0.2]
    with pytest.raises(AssertionError):
        testing.assert_rotation_equivariant(model, atoms, -np.eye(3), atol=1e-10)


@pytest.mark.parametrize("make", [_bulk, _cluster])
def test_forces_are_minus_energy_gradient(make):
    testing.assert_forces_match_fd(small_model(), make(), task=1, n_checks=4)


def test_stress_matches_strain_derivative():
    testing.assert_stress_matches_fd(small_model(), _bulk(), task=0)


def test_tasks_change_predictions():
    model = small_model()
    atoms = _bulk()
    e0 = testing.predict(model, atoms, 0)["energy"]
    e1 = testing.predict(model, atoms, 1)["energy"]
    assert abs(e0 - e1) > 1e-3


def test_parameter_groups_partition_every_parameter_once():
    model = small_model()
    groups = model.parameter_groups()
    ids_task = [id(p) for p in groups["task"]]
    ids_shared = [id(p) for p in groups["shared"]]
    all_ids = [id(p) for p in model.parameters()]
    assert len(set(ids_task)) == len(ids_task) and len(set(ids_shared)) == len(ids_shared)
    assert not set(ids_task) & set(ids_shared)
    assert sorted(ids_task + ids_shared) == sorted(all_ids)
    # θ_T is exactly the task blocks of TaskLinear/ElementEmbedding plus ShiftScale, by type
    expected = []
    for m in model.modules():
        if isinstance(m, (TaskLinear, ElementEmbedding)) and m.task_weight is not None:
            expected.append(id(m.task_weight))
        if isinstance(m, ShiftScale):
            expected += [id(m.shift), id(m.scale)]
    assert sorted(ids_task) == sorted(expected)
    n_task_linear = sum(isinstance(m, TaskLinear) and m.task_weight is not None for m in model.modules())
    # 2 layers x (linear_1 + linear_2) + 2 readout linears
    assert n_task_linear == 6


def test_single_task_model_has_only_shift_scale_as_task_parameters():
    model = small_model(tasks=("only",))
    groups = model.parameter_groups()
    assert [p.shape for p in groups["task"]] == [model.shift_scale.shift.shape, model.shift_scale.scale.shape]


def test_missing_element_is_a_clear_error():
    model = small_model()
    with pytest.raises(ValueError, match="not in the model's element list"):
        testing.predict(model, molecule("H2O"))


def test_energy_and_forces_are_smooth_at_the_cutoff():
    model = small_model()
    testing.assert_smooth_at_cutoff(model, task=1)
    # and the check does see a discontinuity: a neighbour well inside the cutoff matters
    with pytest.raises(AssertionError):
        testing.assert_smooth_at_cutoff(model, task=1, delta=1.0)
