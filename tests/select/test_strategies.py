"""Model-error strategy through a real (tiny, freshly trained) omni_model checkpoint."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from omni_data.select.selection import SelectConfig, select_bridge
from omni_data.select.strategies import pick_error, record_error, top_error


def test_top_error_order_and_ties():
    scores = np.array([0.5, 2.0, 2.0, 0.1, 3.0])
    assert top_error(scores, 3).tolist() == [4, 1, 2]  # ties: lower row first
    assert top_error(scores, 2, allowed=np.array([1, 0, 1, 1, 0], bool)).tolist() == [2, 0]
    picks = pick_error(scores, 2)
    assert picks.score.tolist() == [3.0, 2.0] and np.isnan(picks.distance).all()


def test_missing_checkpoint_is_an_error(tmp_path):
    from omni_model.scorer import model_scorer

    with pytest.raises(FileNotFoundError, match="checkpoint"):
        model_scorer(str(tmp_path / "none.pt"))


@pytest.mark.slow
def test_error_strategy_with_a_trained_omni_model(tmp_path, optional):
    optional("torch", "model")
    from omni_data.cli.main import main
    from omni_data.store import Store, write_shard
    from omni_data.store.testing import emt_records
    from omni_model.calculator import OmniCalculator
    from omni_model.config import config_from_dict
    from omni_model.scorer import model_scorer
    from omni_model.train.trainer import Trainer

    store = tmp_path / "emt"
    recs = emt_records(8, seed=3, task="a") + emt_records(8, seed=4, dataset="emt2", task="b")
    write_shard(store, "s0", recs)
    cfg = config_from_dict(
        {
            "model": {"channels": 8, "lmax": 1, "num_layers": 2, "cutoff": 4.0, "radial_hidden": [8]},
            "data": {"store": str(store), "batch_size": 4, "valid_fraction": 0.25},
            "optim": {"lr": 0.01, "ema_decay": 0.9, "warmup_steps": 1},
            "run": {"out_dir": str(tmp_path / "run"), "progress": False, "checkpoint_every": 0},
            "stages": [{"name": "all", "epochs": 1}],
        }
    )
    Trainer(cfg).run()
    ckpt = tmp_path / "run" / "final.pt"
    assert main(["describe", str(store), "--no-cluster"]) == 0
    out = tmp_path / "sel"
    assert (
        main(
            [
                "select-bridge",
                str(store),
                "--count",
                "4",
                "--strategy",
                "error",
                "--model",
                str(ckpt),
                "--out",
                str(out),
                "--no-cluster",
            ]
        )
        == 0
    )
    table = pq.read_table(out / "selection.parquet").to_pandas()
    # independent errors: each record with its own task head
    errs = {r.id: record_error(r, OmniCalculator(str(ckpt), task=r.task)) for r in Store(store)}
    want = sorted(errs, key=lambda i: (-errs[i], i))[:4]
    assert set(table["id"]) == set(want)
    np.testing.assert_allclose(
        sorted(table["score"], reverse=True), sorted((errs[i] for i in want), reverse=True), rtol=1e-6
    )
    res = select_bridge(
        SelectConfig(stores=[str(store)], out=str(tmp_path / "hyb"), count=3, strategy="hybrid", pool=2.0),
        scorer=model_scorer(str(ckpt)),
    )
    assert res["picked"] == 3
