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
    assert lines[1].split()[0] == "b" and int(lines[1].split()[1]) == 8 and lines[2] == ""
    # then raw energy/force errors per (head, data); no calibration split given, so no offsets
    assert lines[3].split()[:4] == ["head", "data", "n", "test"]
    assert lines[4].split()[:3] == ["b", "b", "8"] and lines[4].split()[6] == "-"
    assert "no calibration split" in lines[-1]


def test_evaluate_over_seeds_prints_mean_and_std_per_row(tmp_path, emt_store, capsys):
    """The recipe for seeds: train the same config with run.seed 0, 1, 2, then ``evaluate`` one
    checkpoint with ``--seed-checkpoint`` for the others: mean ± std (ddof 1) per row."""
    import numpy as np

    from omni_model.evaluation.transfer import evaluate_checkpoint

    ckpts = []
    for seed in (0, 1, 2):
        cfg = {
            "model": {"channels": 8, "lmax": 1, "num_layers": 1, "cutoff": 4.0, "radial_hidden": [8]},
            "data": {"batch_size": 4},
            "run": {"epochs": 1, "progress": False, "seed": seed},
        }
        path = tmp_path / f"train{seed}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        assert main([str(path), "--store", str(emt_store), "--out", str(tmp_path / f"s{seed}")]) == 0
        ckpts.append(str(tmp_path / f"s{seed}" / "final.pt"))
    capsys.readouterr()
    args = ["evaluate", ckpts[0], str(emt_store), "--task", "b"]
    assert main([*args, "--seed-checkpoint", ckpts[1], "--seed-checkpoint", ckpts[2]]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = out[out.index(next(line for line in out if line.startswith("over 3 checkpoints"))) :]
    assert summary[1].split()[:4] == ["head", "data", "n", "test"]
    row = summary[2].split()
    maes = [evaluate_checkpoint(c, str(emt_store), ["b"]).rows[0]["energy_mae"] * 1000 for c in ckpts]
    assert row[:4] == ["b", "b", "8", "3"] and len(set(np.round(maes, 6))) == 3  # three different models
    assert float(row[4]) == round(float(np.mean(maes)), 1) and row[5] == "±"
    assert float(row[6]) == round(float(np.std(maes, ddof=1)), 1)
    assert summary[-1].startswith("mean ± std (ddof 1) over the checkpoints")


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 1\n")
    assert main([str(path)]) == 2  # a bad config is a usage error, like a bad argument
    err = capsys.readouterr().err
    assert err.startswith("omni-train train: error: ") and len(err.splitlines()) == 1
    assert "bad.yaml" in err and "optim.learning_rate" in err
    assert load_config("small").model.channels == 16


def test_threads_option_sets_torch_threads_before_any_work(tmp_path, capsys, monkeypatch):
    """``--threads N`` is applied first (even a run that then fails on its config has it);
    without it ``$OMP_NUM_THREADS`` decides, else one thread."""
    import torch

    before = torch.get_num_threads()
    try:
        missing = str(tmp_path / "missing.yaml")
        assert main(["train", missing, "--threads", "2"]) == 1 and torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert main(["train", missing]) == 1 and torch.get_num_threads() == 3
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert main(["evaluate", str(tmp_path / "missing.pt"), str(tmp_path)]) == 1 and torch.get_num_threads() == 1
        assert main(["evaluate", str(tmp_path / "missing.pt"), str(tmp_path), "--threads", "2"]) == 1
        assert torch.get_num_threads() == 2
        err = capsys.readouterr().err.splitlines()
        assert err[0] == f"omni-train train: error: [Errno 2] No such file or directory: '{missing}'"
    finally:
        torch.set_num_threads(before)


def test_threads_in_a_fresh_process_set_interop_too(tmp_path):
    """In a new process the inter-op pool is sized as well (it can be set only once per process)."""
    import os
    import subprocess
    import sys

    code = (
        "import torch; from omni_model.cli import main; "
        f"main(['train', {str(tmp_path / 'missing.yaml')!r}, '--threads', '2']); "
        "print(torch.get_num_threads(), torch.get_num_interop_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.stdout.split() == ["2", "2"], proc.stderr


def test_set_threads_when_interop_is_already_fixed(monkeypatch):
    """torch refuses to resize the inter-op pool once parallel work ran: the intra-op count is
    still applied and nothing is raised."""
    import torch

    from omni_model.threads import set_threads

    def refuse(n: int) -> None:
        raise RuntimeError("Error: cannot set number of interop threads after parallel work has started")

    before = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_interop_threads", lambda: 7)
    monkeypatch.setattr(torch, "set_num_interop_threads", refuse)
    try:
        assert set_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_train_subcommand_and_yaml_shortcut_agree(tmp_path, capsys, monkeypatch):
    """``omni-train train X.yaml`` and ``omni-train X.yaml`` are one command; a word that is
    neither a command nor an existing .yaml file is named with the commands."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 1\n")
    assert main(["train", str(path)]) == 2
    first = capsys.readouterr().err
    assert main([str(path)]) == 2
    assert capsys.readouterr().err == first
    assert main(["small"]) == 2
    assert capsys.readouterr().err == (
        "omni-train: error: unknown command 'small'; commands: train, evaluate, "
        "preset (a preset trains with: omni-train train NAME)\n"
    )
