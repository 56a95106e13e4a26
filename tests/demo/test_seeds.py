"""Seeds and ablation variants of the demo's training runs: configs only (no training here)."""

from __future__ import annotations

import pytest
import yaml

from omni_model.demo.ablation import default_variants
from omni_model.demo.layout import DemoLayout
from omni_model.demo.run import TASK_L2, run_demo, train_config
from omni_model.demo.training import BRIDGE_L2


def test_each_seed_gets_its_own_folder_and_training_seed(tmp_path):
    lay = DemoLayout(tmp_path)
    first = yaml.safe_load(train_config(lay, "bridged", "ci", seed=5).read_text())
    third = yaml.safe_load(train_config(lay, "bridged", "ci", seed=5, k=2).read_text())
    assert first["run"]["seed"] == 5 and third["run"]["seed"] == 7
    assert first["run"]["out_dir"] == str(lay.run("bridged")) and third["run"]["out_dir"] == str(
        lay.run("bridged-seed2")
    )
    assert first["data"]["store"] == third["data"]["store"] == str(lay.store("train_bridge"))
    assert first["loss"]["task_l2"] == BRIDGE_L2 == 0.0  # the sweep's choice on validation rows
    regularized = yaml.safe_load(train_config(lay, "regularized", "ci", seed=5).read_text())
    assert regularized["loss"]["task_l2"] == TASK_L2 == 1e-4


def test_ablation_variants_set_bridge_and_lambda(tmp_path):
    lay = DemoLayout(tmp_path)
    variants = {v.name: v for v in default_variants([1e-4, 1e-2])}
    assert list(variants) == ["plain", "bridge", "bridge+reg0.0001", "bridge+reg0.01"]
    v = variants["bridge"]
    cfg = yaml.safe_load(
        train_config(lay, f"ablation-{v.name}", "ci", 0, bridge=v.bridge, task_l2=v.task_l2, steps=300).read_text()
    )
    assert cfg["data"]["store"] == str(lay.store("train_bridge")) and cfg["loss"]["task_l2"] == 0.0
    assert cfg["stages"][0]["steps"] == 300


def test_seeds_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        run_demo(tmp_path / "d", size="ci", seeds=0)


def test_ablation_table_has_mean_and_spread_per_variant():
    from omni_model.demo import report
    from omni_model.demo.ablation import format_ablation

    def row(off: float) -> dict:
        return {
            "kind": "cross-domain",
            "head": "crystals",
            "data": "molecules test (GFN1-xTB)",
            "n": 130,
            "n_calibration": 38,
            "energy_mae": 0.4,
            "energy_mae_offset": off,
            "forces_mae": 2.0,
        }

    result = {"plain": {"rows": report.aggregate_seeds([[row(0.26)], [row(0.28)]])}}
    line = format_ablation(result).splitlines()[2]
    assert line.startswith("| plain | molecules under crystals head (GFN1-xTB) | 130 | 38 | 2 |")
    assert "270.0 ± 14.1" in line
