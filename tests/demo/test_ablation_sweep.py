"""The ablation's sweep (issue 18 item 3): option parsing, one factor at a time, and a choice made
on validation rows only. Fakes stand in for trainings; no model is trained here."""

from __future__ import annotations

import pytest
import yaml

from omni_model.demo import ablation, sweep, sweep_scores
from omni_model.demo.layout import DemoLayout
from omni_model.demo.sweep import Variant, parse_sweep_values, summarize_sweep, sweep_variants
from omni_model.demo.sweep_scores import choose_by_validation, valid_csv_rows
from omni_model.demo.training import train_config


def test_sweep_varies_one_factor_at_a_time_around_the_default():
    names = {v.name: v for v in sweep_variants([0.0, 1e-5, 1e-4, 1e-1], [0.03, 0.12, 0.3], [1.0, 4.0], 1e-4, 0.12)}
    assert list(names) == [
        "plain",
        "bridge+reg0.0001",
        "bridge",
        "bridge+reg1e-05",
        "bridge+reg0.1",
        "bridge+reg0.0001+frac0.03",
        "bridge+reg0.0001+frac0.3",
        "bridge+reg0.0001+w4",
    ]
    assert names["plain"] == Variant("plain", False, 0.0)
    assert names["bridge"] == Variant("bridge", True, 0.0)  # λ 0 with the bridge
    assert names["bridge+reg0.0001+frac0.3"] == Variant("bridge+reg0.0001+frac0.3", True, 1e-4, fraction=0.3)
    assert names["bridge+reg0.0001+w4"] == Variant("bridge+reg0.0001+w4", True, 1e-4, weight=4.0)


def test_sweep_around_lambda_zero_names_its_base_bridge():
    names = [v.name for v in sweep_variants([], [0.3], [4.0], 0.0, 0.12)]
    assert names == ["plain", "bridge", "bridge+frac0.3", "bridge+w4"]


def test_sweep_values_accept_percent_and_name_a_bad_value():
    assert parse_sweep_values(["3%", "0.1", "1e-2"], "fraction", positive=True) == [0.03, 0.1, 0.01]
    assert parse_sweep_values(["0", "1e-5"], "l2") == [0.0, 1e-5]
    with pytest.raises(ValueError, match=r"--sweep-fraction: 'abc' is not a number"):
        parse_sweep_values(["abc"], "fraction", positive=True)
    with pytest.raises(ValueError, match=r"--sweep-weight: '0' must be > 0"):
        parse_sweep_values(["0"], "weight", positive=True)
    with pytest.raises(ValueError, match=r"--sweep-fraction: '150%' is more than 100%"):
        parse_sweep_values(["150%"], "fraction", positive=True)


def test_command_line_refuses_a_bad_sweep_value(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.main([str(tmp_path), "--sweep", "--size", "small", "--sweep-l2", "-1"])
    assert exc.value.code == 2
    assert "--sweep-l2: '-1' must be >= 0" in capsys.readouterr().err


def test_sweep_config_sets_the_bridge_store_and_the_sampling_weights(tmp_path):
    lay = DemoLayout(tmp_path)
    store = tmp_path / "sweep" / "bridge-0.3" / "stores" / "train_bridge"
    cfg = yaml.safe_load(
        train_config(
            lay,
            "ablation-x",
            "small",
            0,
            bridge=True,
            task_l2=1e-4,
            steps=50,
            store=store,
            task_weights={"crystals": 480.0, "metals": 140.0},
        ).read_text()
    )
    assert cfg["data"]["store"] == str(store)
    assert cfg["sampling"] == {"mode": "weights", "weights": {"crystals": 480.0, "metals": 140.0}}
    plain = yaml.safe_load(train_config(lay, "ablation-plain", "small", 0, bridge=False, task_l2=0.0).read_text())
    assert plain["data"]["store"] == str(lay.store("train")) and "sampling" not in plain


def test_task_weights_multiply_the_common_task_only(monkeypatch, tmp_path):
    from omni_model.demo import data_stages

    monkeypatch.setattr(data_stages, "store_counts", lambda path: {"by_task": {"crystals": 120, "metals": 140}})
    assert sweep.task_weights(tmp_path, 4.0) == {"crystals": 480.0, "metals": 140.0}
    assert sweep.task_weights(tmp_path, 1.0) is None  # proportional: the trainer's default


def test_valid_csv_rows_take_the_last_line_per_task(tmp_path):
    path = tmp_path / "valid.csv"
    path.write_text(
        "step,stage,epoch,task,n,energy_mae_per_atom,forces_mae,stress_mae\n"
        "40,all,1,metals,15,0.5,0.9,0.01\n40,all,1,molecules,14,0.6,2.0,\n"
        "80,all,2,metals,15,0.25,0.45,0.01\n"
    )
    rows = valid_csv_rows(path)
    assert [(r["data"], r["energy_mae"], r["forces_mae"], r["n"]) for r in rows] == [
        ("metals", 0.25, 0.45, 15),
        ("molecules", 0.6, 2.0, 14),
    ]
    assert {r["kind"] for r in rows} == {"trainer validation"}  # informative only: never chosen by


def _val(e_off: float, f: float, met: float, mol: float, cry: float = 0.1) -> list[dict]:
    """Validation rows of one variant: both OOD rows scale together; in-domain E and F of each task."""
    rows = [
        {
            "kind": "validation cross-domain",
            "head": "crystals",
            "data": d,
            "n": 40,
            "energy_mae_offset": e_off,
            "forces_mae": f,
        }
        for d in ("metals", "molecules")
    ]
    rows += [
        {"kind": "validation in-domain", "head": t, "data": t, "n": 14, "energy_mae": v, "forces_mae": v}
        for t, v in (("metals", met), ("molecules", mol), ("crystals", cry))
    ]
    return rows


def test_choice_is_the_best_validation_score_within_the_in_domain_band():
    val = {
        "plain": _val(1.0, 1.0, 0.10, 0.10),
        "strong": _val(0.5, 0.5, 0.13, 0.10),  # best transfer but metals 30% worse: outside the band
        "mild": _val(0.8, 0.9, 0.105, 0.10),  # within 10%
        "crystals-worse": _val(0.7, 0.7, 0.10, 0.10, cry=0.2),
    }  # crystals twice as wrong in-domain
    choice = choose_by_validation(val)
    assert choice["chosen"] == "mild" and choice["within_band"]
    assert choice["scores"]["mild"]["score"] == pytest.approx(0.85)
    assert choice["scores"]["strong"]["in_domain_worst"] == pytest.approx(1.3)
    assert choice["scores"]["crystals-worse"]["in_domain_worst"] == pytest.approx(2.0)


def test_choice_without_any_variant_in_the_band_says_so():
    choice = choose_by_validation(
        {"plain": _val(1.0, 1.0, 0.10, 0.10), "a": _val(0.7, 0.7, 0.2, 0.1), "b": _val(0.6, 0.6, 0.3, 0.1)}
    )
    assert choice == {"chosen": "b", "within_band": False, "scores": choice["scores"]}
    with pytest.raises(ValueError, match="'plain' variant"):
        choose_by_validation({"a": _val(1, 1, 1, 1)})


def _seed(val_scale: float, test_e: float) -> dict:
    rows = [
        {
            "kind": "cross-domain",
            "head": "crystals",
            "data": "molecules test (GFN1-xTB)",
            "n": 126,
            "energy_mae": 1.0,
            "energy_mae_offset": test_e,
            "forces_mae": 1.0,
        }
    ]
    return {"rows": rows, "validation": _val(val_scale, val_scale, 0.1, 0.1), "seconds": 10.0}


def test_summary_chooses_on_validation_even_when_test_rows_disagree():
    out = {
        "plain": {
            "variant": Variant("plain", False, 0.0).__dict__,
            "seeds": {"0": _seed(1.0, 0.2), "1": _seed(1.0, 0.4)},
        },
        "a": {"variant": Variant("a", True, 1e-4).__dict__, "seeds": {"0": _seed(0.8, 0.9), "1": _seed(0.6, 0.9)}},
        "b": {"variant": Variant("b", True, 0.0).__dict__, "seeds": {"0": _seed(0.95, 0.01), "1": _seed(0.95, 0.01)}},
    }
    result = summarize_sweep(out)
    assert result["choice"]["chosen"] == "a"  # b's test rows are far better: never looked at
    test_row = result["variants"]["plain"]["rows"][0]
    assert test_row["energy_mae_offset"] == pytest.approx(0.3) and test_row["n_seeds"] == 2
    val_row = result["variants"]["a"]["validation_rows"][0]
    assert val_row["energy_mae_offset"] == pytest.approx(0.7) and val_row["energy_mae_offset_std"] == pytest.approx(
        0.1414, abs=1e-4
    )
    assert "**(chosen)**" in sweep.format_sweep(result).splitlines()[3]


def test_in_domain_rows_follow_the_truth_split(monkeypatch, tmp_path):
    """Held-out structures are scored for validation or test by where their recomputed copy is."""
    from types import SimpleNamespace

    import numpy as np

    from omni_data import store as store_mod
    from omni_data.harmonize import splits
    from omni_model.demo import evaluate

    truth = [SimpleNamespace(metadata={"source_id": i}) for i in ("m1", "m2", "c1")]
    held = [
        SimpleNamespace(id=i, task=t)
        for i, t in (("m1", "metals"), ("m2", "metals"), ("c1", "crystals"), ("lost", "metals"))
    ]  # "lost": no recomputed copy
    monkeypatch.setattr(store_mod, "Store", lambda path: truth if path.name == "test_truth" else held)
    monkeypatch.setattr(splits, "split_of", lambda store: np.array(["val", "test", "test"], dtype=object))
    monkeypatch.setattr(evaluate, "omni_predictor", lambda checkpoint: "predict")
    seen: dict[str, list[str]] = {}

    def rows(records, predict):
        ids = [r.id for r in records]
        seen[",".join(ids)] = ids
        return [
            {"kind": "same-domain", "head": t, "data": f"{t} test", "n": sum(r.task == t for r in records)}
            for t in sorted({r.task for r in records})
        ]

    monkeypatch.setattr(evaluate, "same_domain_rows", rows)
    out = sweep_scores.in_domain_split_rows("final.pt", DemoLayout(tmp_path))
    assert list(seen) == ["m1", "m2,c1"]
    assert out["val"] == [{"kind": "validation in-domain", "head": "metals", "data": "metals", "n": 1}]
    assert [(r["kind"], r["data"], r["n"]) for r in out["test"]] == [
        ("same-domain (test split)", "crystals", 1),
        ("same-domain (test split)", "metals", 1),
    ]


def _sweep_result() -> dict:
    def rows(e: float, f: float, e_std: float) -> list[dict]:
        return [
            {"kind": "same-domain", "head": "metals", "data": "metals test", "n": 9, "energy_mae": 0.05},
            {
                "kind": "cross-domain",
                "head": "crystals",
                "data": "molecules test (GFN1-xTB)",
                "n": 130,
                "energy_mae_offset": e,
                "energy_mae_offset_std": e_std,
                "forces_mae": f,
            },
        ]

    return {
        "variants": {"plain": {"rows": rows(0.240, 2.17, 0.015)}, "bridge": {"rows": rows(0.122, 1.098, 0.0068)}},
        "choice": {"chosen": "bridge"},
    }


def test_sweep_points_are_the_cross_domain_test_rows_in_milli_units():
    points = sweep.sweep_points(_sweep_result(), "molecules", "energy_mae_offset")
    assert [(n, round(m, 6), round(s, 6)) for n, m, s in points] == [("plain", 240.0, 15.0), ("bridge", 122.0, 6.8)]
    assert [n for n, _, _ in sweep.sweep_points(_sweep_result(), "molecules", "forces_mae")] == ["plain", "bridge"]
    assert sweep.sweep_points(_sweep_result(), "metals", "energy_mae_offset") == []  # no such cross-domain row


def test_plot_command_draws_the_sweep_from_its_json(tmp_path, capsys):
    import json

    import matplotlib.image

    (tmp_path / "sweep.json").write_text(json.dumps(_sweep_result()))
    assert ablation.main([str(tmp_path), "--plot", str(tmp_path / "sweep.json")]) == 0
    png = tmp_path / "sweep.png"
    assert f"wrote {png}" in capsys.readouterr().out
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 300 and image.shape[1] > 4 * image.shape[0] // 2
