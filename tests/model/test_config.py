"""Config loading: presets parse, bad keys and values are ValueErrors naming key and file."""

from __future__ import annotations

import dataclasses

import pytest

from omni_model.config import Config, ModelConfig, list_presets, load_config


def test_presets_load_and_match_their_description():
    assert {"small", "sevennet-omni"} <= set(list_presets())
    big = load_config("sevennet-omni")
    assert (big.model.lmax, big.model.num_layers, big.model.parity, big.model.cutoff, big.model.channels) == (
        3,
        5,
        True,
        6.0,
        128,
    )
    small = load_config("small")
    assert small.model.channels <= 32 and small.model.lmax <= 2 and small.model.num_layers <= 3


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  chanels: 8\n")
    with pytest.raises(ValueError, match=r"c\.yaml: unknown key 'model\.chanels'"):
        load_config(p)


@pytest.mark.parametrize(
    "text, key",
    [
        ("optim:\n  lr: fast\n", "optim.lr"),
        ("optim:\n  scheduler: exponential\n", "optim.scheduler"),
        ("model:\n  lmax: 2.5\n", "model.lmax"),
        ("loss:\n  per_task:\n    mpa: {forces: x}\n", "loss.per_task.mpa.forces"),
        ("stages:\n  - {name: s, epochs: 1, steps: 3}\n", "stages[0]"),
        ("data:\n  batch_size: 0\n", "data.batch_size"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.yaml: key '{key.replace('[', '.').replace(']', '.')}"):
        load_config(p)


def test_round_trip_through_plain_dict():
    from omni_model.config import config_from_dict

    cfg = load_config("small")
    again = config_from_dict(cfg.to_dict())
    assert again == cfg
    assert isinstance(again.model, ModelConfig)
    assert dataclasses.asdict(Config()) == config_from_dict({}).to_dict()


def test_every_key_is_documented():
    """docs/train-config.md lists every key of every section."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "train-config.md").read_text()
    cfg = Config()
    for section in ("model", "data", "sampling", "loss", "optim", "run"):
        for f in dataclasses.fields(getattr(cfg, section)):
            assert f"`{section}.{f.name}`" in doc, f"{section}.{f.name} undocumented"
