"""Training on a real store: exact resume, curriculum stages, logs, checkpoints, references."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from omni_model.config import config_from_dict
from omni_model.train.checkpoint import load_checkpoint, load_model
from omni_model.train.trainer import Trainer


def tiny_config(store, out, **over):
    d = {
        "model": {"channels": 8, "lmax": 1, "num_layers": 2, "cutoff": 4.0, "radial_hidden": [8]},
        "data": {"store": str(store), "batch_size": 3, "valid_fraction": 0.25},
        "loss": {"task_l2": 0.01},
        "optim": {"lr": 0.01, "ema_decay": 0.9, "warmup_steps": 2},
        "run": {"out_dir": str(out), "progress": False, "checkpoint_every": 2, "log_every": 1},
        "stages": [{"name": "a-only", "tasks": ["a"], "steps": 3}, {"name": "all", "epochs": 1}],
    }
    for k, v in over.items():
        d[k].update(v)
    return config_from_dict(d)


def test_resume_reproduces_the_uninterrupted_run(tmp_path, emt_store):
    full = Trainer(tiny_config(emt_store, tmp_path / "full"))
    full.run()
    assert full.step == 3 + 4  # 12 train graphs / batch 3 = 4 steps per epoch in stage 2
    first = Trainer(tiny_config(emt_store, tmp_path / "cut"))
    first.run(max_steps=4)  # "killed" after the step-4 checkpoint, mid-stage
    assert first.step == 4
    resumed = Trainer(tiny_config(emt_store, tmp_path / "cut"))
    resumed.run()
    assert resumed.history[0]["step"] == 5
    want = [h["loss"] for h in full.history[4:]]
    got = [h["loss"] for h in resumed.history]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)
    a = load_checkpoint(tmp_path / "full" / "final.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "final.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with open(tmp_path / "cut" / "train.csv") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh)]
    assert steps == list(range(1, 8))  # rows past the checkpoint were trimmed, none doubled


def test_first_stage_samples_only_its_tasks_and_validation_is_per_task(tmp_path, emt_store):
    tr = Trainer(tiny_config(emt_store, tmp_path / "run"))
    seen = []
    orig = tr.train_step

    def spy(graphs):
        seen.append({g.task for g in graphs})
        return orig(graphs)

    tr.train_step = spy
    errors = tr.run()
    a = tr.model.task_index("a")
    assert all(s == {a} for s in seen[:3])
    assert set().union(*seen[3:]) == {0, 1}
    assert set(errors) == {"a", "b"}
    for e in errors.values():
        assert e["n"] > 0 and math.isfinite(e["energy_mae_per_atom"]) and math.isfinite(e["forces_mae"])
    with open(tmp_path / "run" / "valid.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["task"] for r in rows} == {"a", "b"} and {r["stage"] for r in rows} == {"a-only", "all"}


def test_checkpoint_is_weights_only_and_holds_frozen_references(tmp_path, emt_store):
    tr = Trainer(tiny_config(emt_store, tmp_path / "run"))
    tr.run()
    ck = load_checkpoint(tmp_path / "run" / "final.pt")  # weights_only=True inside
    assert ck["config"]["model"]["tasks"] == ["a", "b"]
    assert ck["references_source"].startswith("fitted here")
    refs = ck["references"]
    # the store's task b energies are task a's + 0.5 eV/atom: the fit sees that offset
    for z in ("29", "79", "78"):
        assert refs["b"][z] - refs["a"][z] == pytest.approx(0.5, abs=0.25)
    model, cfg, _ = load_model(tmp_path / "run" / "final.pt")
    shift = model.shift_scale.ref_shift
    col = model.elements.index(79)
    assert float(shift[model.task_index("a"), col]) == pytest.approx(refs["a"]["79"])
    # fine-tuning from it reuses (does not refit) the references, whatever the data says
    ft = Trainer(
        tiny_config(
            emt_store, tmp_path / "ft", run={"init_from": str(tmp_path / "run" / "final.pt")}, model={"channels": 8}
        )
    )
    assert ft.prep.references_source == "checkpoint (frozen)"
    assert torch.equal(ft.model.shift_scale.ref_shift, model.shift_scale.ref_shift)


def test_store_references_section_is_used_when_present(tmp_path):
    from omni_data.store import Store

    from ..conftest import make_store

    store = make_store(tmp_path / "s", n=6)
    refs = {"a": {"mu": {"29": -3.0, "79": -3.1, "78": -5.0}}, "b": {"mu": {"29": -1.0, "79": -2.0, "78": -4.0}}}
    full = {}
    for t, r in refs.items():
        full[t] = {
            "task": t,
            "mu": r["mu"],
            "absent": [],
            "underdetermined": False,
            "rank": 3,
            "n_frames": 3,
            "n_atoms": 12,
            "n_no_energy": 0,
            "force_rms": 0.5,
            "e_per_atom_mean_before": None,
            "e_per_atom_std_before": None,
            "e_per_atom_mean_after": None,
            "e_per_atom_std_after": None,
            "ridge": 0.0,
        }
    Store(store).catalog.update_section("references", full)
    tr = Trainer(tiny_config(store, tmp_path / "run"))
    assert tr.prep.references_source == "store catalog section 'references'"
    col = tr.model.elements.index(78)
    assert float(tr.model.shift_scale.ref_shift[tr.model.task_index("b"), col]) == -4.0


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.float32), ("fp64", torch.float64)])
def test_precision_modes_train(tmp_path, emt_store, precision, dtype):
    """bf16 autocasts the forward (meant for GPUs; CPU autocast runs the same code path here)."""
    tr = Trainer(tiny_config(emt_store, tmp_path / precision, run={"precision": precision}))
    assert next(tr.model.parameters()).dtype == dtype
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    recs = [tr.train_step(tr.prep.train.graphs([0, 1, 2])) for _ in range(2)]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in recs)
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
