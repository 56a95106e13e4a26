"""``omni_data.typedconfig``: the one way YAML becomes typed config (issue 20, item 5). Manifests,
protocols, omni-train configs and the pipelines' corpus file all report every problem at once,
naming the file and each key."""

from __future__ import annotations

import enum
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pytest

from omni_data.typedconfig import Check, check_partial, from_mapping, load_typed

REPO = Path(__file__).resolve().parents[1]


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def _positive(value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be > 0, got {value}")


@dataclass
class Inner:
    size: Annotated[float, Check(_positive)] = 1.0
    shape: tuple[int, int] = (1, 1)


@dataclass
class Outer:
    name: str
    mode: Literal["fast", "slow"]
    colour: Colour = Colour.RED
    inner: Inner = field(default_factory=Inner)
    tags: tuple[str, ...] = ()
    limits: dict[str, float] = field(default_factory=dict)
    count: int | None = None


def test_builds_and_converts():
    got = from_mapping(
        Outer,
        {
            "name": "a",
            "mode": "fast",
            "colour": "blue",
            "inner": {"size": 2, "shape": [3, 4]},
            "tags": ["x"],
            "limits": {"e": 1},
            "count": None,
        },
        "f.yaml",
    )
    assert got == Outer("a", "fast", Colour.BLUE, Inner(2.0, (3, 4)), ("x",), {"e": 1.0}, None)
    assert isinstance(got.inner.size, float) and isinstance(got.limits["e"], float)


def test_empty_value_means_default():
    assert from_mapping(Outer, {"name": "a", "mode": "slow", "inner": None, "tags": None}, "f.yaml").inner == Inner()


def test_every_problem_is_reported_once_with_file_and_key():
    with pytest.raises(ValueError) as info:
        from_mapping(
            Outer,
            {
                "mode": "medium",
                "colour": "green",
                "inner": {"size": -1, "shape": [1, 2, 3], "sise": 2},
                "tags": "x",
                "count": 1.5,
                "extra": 1,
            },
            "f.yaml",
        )
    assert str(info.value) == (
        "f.yaml: key 'name': required; unknown key 'extra' (allowed: colour, count, inner, limits, mode, name, tags); "
        "key 'mode' must be one of 'fast', 'slow', got 'medium'; key 'colour' must be one of 'red', 'blue', got 'green'; "
        "unknown key 'inner.sise' (did you mean 'size'? allowed: shape, size); key 'inner.size': must be > 0, got -1.0; "
        "key 'inner.shape' must be a list of 2 values, got [1, 2, 3]; key 'tags' must be a list, got 'x'; "
        "key 'count' must be an integer, got 1.5"
    )


def test_bool_is_not_a_number_and_a_number_is_not_a_bool():
    with pytest.raises(ValueError, match=r"key 'inner\.size' must be a number, got True"):
        from_mapping(Outer, {"name": "a", "mode": "fast", "inner": {"size": True}}, "f.yaml")


def test_partial_check_allows_missing_required_keys_only():
    check_partial(Outer, {"inner": {"size": 3}}, "part.yaml")
    with pytest.raises(ValueError, match=r"^part\.yaml: unknown key 'inner\.sise'"):
        check_partial(Outer, {"inner": {"sise": 3}}, "part.yaml")


def test_load_typed_reads_yaml_and_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\nmode: fast\ninner: {shape: [2, 2]}\n", encoding="utf-8")
    assert load_typed(path, Outer).inner.shape == (2, 2)
    path.write_text("- a\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}: the top level must be a mapping, got a list$"):
        load_typed(path, Outer)


def test_protocol_reports_every_problem_of_a_file_at_once(tmp_path):
    from omni_data.recompute.protocols import ProtocolError, load_protocol

    path = tmp_path / "p.yaml"
    path.write_text(
        "engine: tblite\nmethod: {name: GFN2-xTB, optoins: {}}\nmolecule: {vacuum: -1, policy: pack}\n",
        encoding="utf-8",
    )
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for words in (
        "unknown key 'method.optoins' (did you mean 'options'?",
        "key 'molecule.policy' must be one of 'box', 'refuse', got 'pack'",
        "key 'molecule.vacuum': must be > 0 Å, got -1.0",
    ):
        assert words in message


def test_protocol_engine_needs_its_section(tmp_path):
    from omni_data.recompute.protocols import ProtocolError, load_protocol

    path = tmp_path / "v.yaml"
    path.write_text("engine: vasp\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"key 'vasp\.input_set' is required for engine vasp"):
        load_protocol(path)
    path.write_text("engine: pyscf\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"key 'method\.name' is required for engine pyscf"):
        load_protocol(path)


def test_train_config_reports_every_bad_key_at_once(tmp_path):
    from omni_model.config import load_config

    path = tmp_path / "train.yaml"
    path.write_text("model:\n  chanels: 8\n  lmax: 2.5\noptim:\n  scheduler: exponential\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: unknown key 'model.chanels' (did you mean 'channels'?")
    assert "key 'model.lmax' must be an integer, got 2.5" in message
    assert "key 'optim.scheduler' must be one of 'none', 'cosine', 'linear', 'plateau', got 'exponential'" in message


def _corpus_module():
    spec = importlib.util.spec_from_file_location("omni_corpus_typed", REPO / "pipelines" / "corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_corpus_file_types_and_missing_keys(tmp_path):
    import yaml

    corpus = _corpus_module()
    data = yaml.safe_load((REPO / "pipelines" / "config" / "corpus.yaml").read_text(encoding="utf-8"))
    del data["ingest"]["memory"], data["bridge"]["protocol"]
    data["bridge"]["fraction"] = "a tenth"
    data["datasets"][0]["weight"] = -1
    path = tmp_path / "corpus.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        corpus.load_corpus(path)
    message = str(info.value)
    for words in (
        "key 'ingest.memory': required",
        "key 'bridge.protocol': required",
        "key 'bridge.fraction' must be a number, got 'a tenth'",
        "key 'datasets[0].weight': must be a number >= 0, got -1.0",
    ):
        assert words in message
    assert corpus.main(["--corpus", str(path), "count"]) == 2


def test_train_config_cross_field_checks_are_reported_together(tmp_path):
    from omni_model.config import load_config

    path = tmp_path / "train.yaml"
    path.write_text(
        "data:\n  batch_size: 0\noptim:\n  lr: -1\nstages:\n  - {name: s, epochs: 1, steps: 3}\n", encoding="utf-8"
    )
    with pytest.raises(ValueError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: key 'data.batch_size' must be >= 1; key 'optim.lr' must be > 0; "
        "key 'stages[0]' needs exactly one of epochs or steps > 0"
    )
