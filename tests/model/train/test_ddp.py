"""Two gloo processes (torch.multiprocessing spawn) take the same AdamW steps as one process on
the joined batch: losses are normalised by global label counts and gradients summed."""

from __future__ import annotations

import torch

from omni_model.testing import run_ddp_steps
from omni_model.train.trainer import Trainer

from .test_trainer import tiny_config

# two global batches of 4 training graphs mixing tasks and bulk/slab structures
BATCHES = [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_two_process_gloo_matches_single_process_joined_batch(tmp_path, emt_store):
    # float64: Adam divides by |g|, so float32 summation-order noise on a near-zero gradient
    # would show up as a visible difference that says nothing about DDP
    cfg = tiny_config(emt_store, tmp_path / "single", run={"precision": "fp64"})
    single = Trainer(cfg)
    losses = [single.train_step(single.prep.train.graphs(ks))["loss"] for ks in BATCHES]
    out = tmp_path / "ddp"
    out.mkdir()
    got = run_ddp_steps(cfg, BATCHES, str(out), world=2)
    torch.testing.assert_close(got["losses"], torch.tensor(losses, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    ref = single.model.state_dict()
    assert set(got["params"]) == set(ref)
    for k, v in got["params"].items():
        torch.testing.assert_close(v, ref[k], rtol=1e-9, atol=1e-9, msg=lambda m, k=k: f"{k}: {m}")
    # and the step really moved the weights (the comparison is not between two untouched models)
    fresh = Trainer(tiny_config(emt_store, tmp_path / "fresh", run={"precision": "fp64"})).model.state_dict()
    assert any(not torch.allclose(fresh[k], ref[k]) for k in ref)
