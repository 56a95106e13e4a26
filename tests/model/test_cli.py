"""omni-train: preset listing/printing, training from a YAML file, evaluate, bad config."""
from __future__ import annotations

import yaml

from omni_model.cli import main
from omni_model.config import load_config


def test_preset_list_and_print(capsys):
    assert main(["preset"]) == 0
    assert {"small", "sevennet-omni"} <= set(capsys.readouterr().out.split())
    assert main(["preset", "sevennet-omni"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["lmax"] == 3 and printed["model"]["num_layers"] == 5
    assert main(["preset", "nope"]) == 2


def test_train_then_evaluate(tmp_path, emt_store, capsys):
    cfg = {
        "model": {"channels": 8, "lmax": 1, "num_layers": 1, "cutoff": 4.0, "radial_hidden": [8]},
        "data": {"batch_size": 4},
        "run": {"epochs": 1, "progress": False},
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main([str(path), "--store", str(emt_store), "--out", str(out)]) == 0
    assert (out / "final.pt").is_file() and (out / "train.csv").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(out / "final.pt"), str(emt_store), "--task", "b"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["task", "n"]
    assert len(lines) == 2 and lines[1].split()[0] == "b" and int(lines[1].split()[1]) == 8


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 1\n")
    assert main([str(path)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "optim.learning_rate" in err
    assert load_config("small").model.channels == 16
