"""Selective regularization: λ·‖θ_T‖² shrinks θ_T and leaves θ_C's gradient unchanged."""

from __future__ import annotations

import torch

from omni_model.data.graph import collate, graph_from_atoms, species_table
from omni_model.train.regularization import optimizer_groups, task_l2

from ..conftest import emt_structures, small_model


def _batch(model):
    table = species_table(model.elements)
    graphs = [graph_from_atoms(a, model.cfg.cutoff, table, task=i % 2) for i, a in enumerate(emt_structures(4))]
    return collate(graphs, dtype=torch.float64)


def _grads(model, lam):
    b = _batch(model)
    model.zero_grad()
    out = model(b, forces=True, stress=False)
    loss = (out["energy"] - b.energy).square().mean() + (out["forces"] - b.forces).square().mean()
    (loss + task_l2(model, lam)).backward()
    g = model.parameter_groups()
    return [p.grad.clone() for p in g["task"]], [p.grad.clone() for p in g["shared"]]


def test_penalty_value_is_lambda_times_squared_norm():
    model = small_model()
    with torch.no_grad():
        model.shift_scale.shift.add_(0.5)  # deviation from the frozen references counts
    expected = sum(float((t.detach() ** 2).sum()) for t in model.regularization_terms())
    n_sq = sum(
        float((m.task_weight.detach() ** 2).sum())
        for m in model.modules()
        if getattr(m, "task_weight", None) is not None
    )
    n_sq += float(((model.shift_scale.shift.detach() - model.shift_scale.ref_shift) ** 2).sum())
    n_sq += float(((model.shift_scale.scale.detach() - model.shift_scale.ref_scale) ** 2).sum())
    assert abs(expected - n_sq) < 1e-9
    assert abs(float(task_l2(model, 0.3).detach()) - 0.3 * n_sq) < 1e-9
    assert float(task_l2(model, 0.0)) == 0.0


def test_shared_gradient_unchanged_and_task_gradient_gets_2_lambda_theta():
    lam = 0.7
    model = small_model()
    t0, s0 = _grads(model, 0.0)
    t1, s1 = _grads(model, lam)
    for a, b in zip(s0, s1):
        assert torch.equal(a, b)
    terms = {id(p): p for p in model.parameter_groups()["task"]}
    for p, a, b in zip(model.parameter_groups()["task"], t0, t1):
        if p is model.shift_scale.shift:
            ref = model.shift_scale.ref_shift
        elif p is model.shift_scale.scale:
            ref = model.shift_scale.ref_scale
        else:
            ref = torch.zeros_like(p)
        assert torch.allclose(b - a, 2 * lam * (p.detach() - ref), atol=1e-12)
    assert terms


def test_training_with_lambda_shrinks_task_parameters():
    norms = {}
    for lam in (0.0, 0.5):
        model = small_model(seed=4)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        b = _batch(model)
        for _ in range(15):
            opt.zero_grad()
            out = model(b, forces=False, stress=False)
            loss = (out["energy"] - b.energy).square().mean() + task_l2(model, lam)
            loss.backward()
            opt.step()
        norms[lam] = sum(float((t.detach() ** 2).sum()) for t in model.regularization_terms())
    assert norms[0.5] < 0.85 * norms[0.0]


def test_weight_decay_groups_split_task_and_shared():
    model = small_model()
    groups = optimizer_groups(model, weight_decay_task=0.1, weight_decay_shared=0.0)
    by_name = {g["name"]: g for g in groups}
    assert by_name["task"]["weight_decay"] == 0.1 and by_name["shared"]["weight_decay"] == 0.0
    assert {id(p) for p in by_name["task"]["params"]} == {id(p) for p in model.parameter_groups()["task"]}
    # one AdamW step with zero gradients: decay moves θ_T only
    opt = torch.optim.AdamW(groups, lr=0.1)
    with torch.no_grad():  # task blocks start at zero, where decay has nothing to shrink
        for p in by_name["task"]["params"]:
            p.add_(0.5)
    before = {id(p): p.detach().clone() for p in model.parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p in by_name["shared"]["params"]:
        assert torch.equal(p.detach(), before[id(p)])
    moved = [not torch.equal(p.detach(), before[id(p)]) for p in by_name["task"]["params"]]
    assert all(moved)
