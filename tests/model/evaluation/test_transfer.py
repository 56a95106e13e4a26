"""evaluate_checkpoint / omni-train evaluate on another domain's labels, and the warnings for
elements a head has no reference energy for (evaluate and OmniCalculator)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from omni_model.calculator import OmniCalculator
from omni_model.cli import main
from omni_model.evaluation.references import MissingReferenceWarning, unreferenced, warn_unreferenced
from omni_model.evaluation.transfer import evaluate_checkpoint
from omni_model.testing import predict
from omni_model.train.checkpoint import load_model
from omni_model.train.trainer import Trainer

from ..conftest import atoms_record, emt_structures
from ..train.test_trainer import tiny_config

MU = {29: 0.31, 78: -0.72, 79: 1.05}  # eV per atom: the "other domain's" energy zero vs head a


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, emt_store):
    out = tmp_path_factory.mktemp("transfer")
    Trainer(tiny_config(emt_store, out / "r", run={"checkpoint_every": 0})).run()
    return out / "r" / "final.pt"


@pytest.fixture(scope="module")
def other_domain(tmp_path_factory, checkpoint):
    """Records labelled by head a itself plus per-element constants MU, split val/test by id."""
    from omni_data.harmonize.splits import split_store
    from omni_data.store import write_shard

    model, _, _ = load_model(checkpoint)
    recs = []
    for i, atoms in enumerate(emt_structures(24, seed=11)):
        r = atoms_record(atoms, i, "a", dataset="other")
        pred = predict(model, atoms.copy(), model.task_index("a"))
        r.energy = float(pred["energy"]) + sum(MU[int(z)] for z in atoms.numbers)
        r.forces = np.asarray(pred["forces"], dtype=float)
        r.metadata = {"source_task": "other"}
        recs.append(r)
    path = tmp_path_factory.mktemp("other") / "store"
    write_shard(path, "part-0", recs)
    split_store(path, (0.0, 0.5, 0.5), seed=0, default_key="id")
    return path


def test_offsets_fitted_on_calibration_remove_a_pure_energy_zero(checkpoint, other_domain):
    from omni_data.harmonize.splits import split_of
    from omni_data.store import Store

    labels = split_of(Store(other_domain))
    ev = evaluate_checkpoint(str(checkpoint), str(other_domain), split="test", calibration_split="val", head="a")
    (row,) = ev.rows
    assert (row["head"], row["data"], row["test_split"], row["calibration_split"]) == ("a", "other", "test", "val")
    assert row["n"] == int((labels == "test").sum()) and row["n_calibration"] == int((labels == "val").sum())
    assert row["n"] > 0 and row["n_calibration"] > 0
    assert row["energy_mae"] > 0.1  # the energy zero: a few tenths of an eV per atom
    assert row["energy_mae_offset"] < 1e-4 and row["energy_rmse_offset"] < 1e-4
    for z, mu in MU.items():
        assert row["offsets"][str(z)] == pytest.approx(-mu, abs=1e-4)  # offsets of E_pred - E_ref
    assert row["forces_mae"] < 1e-4  # forces are head a's own
    assert row["uncalibrated"] == []


def test_calibration_and_test_split_must_differ(checkpoint, other_domain):
    with pytest.raises(ValueError, match="disjoint"):
        evaluate_checkpoint(str(checkpoint), str(other_domain), split="val", calibration_split="val", head="a")


def test_cli_prints_raw_and_offset_errors_with_splits(checkpoint, other_domain, capsys):
    assert (
        main(
            [
                "evaluate",
                str(checkpoint),
                str(other_domain),
                "--split",
                "test",
                "--calibration-split",
                "val",
                "--head",
                "a",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("a ") and "other" in ln)
    fields = line.split()
    assert float(fields[4]) > 100 and float(fields[6]) < 0.1  # meV/atom: raw vs after offsets
    assert "'val'" in out and "'test'" in out


def _drop_reference(checkpoint, tmp_path, task: str, z: int):
    ck = torch.load(checkpoint, weights_only=True)
    ck["references"][task].pop(str(z))
    path = tmp_path / "dropped.pt"
    torch.save(ck, path)
    return path


def test_unreferenced_elements():
    refs = {"a": {"29": -3.0, "79": 0.0}}
    assert unreferenced(refs, "a", [29, 79, 78, 29]) == [78, 79]
    assert unreferenced(refs, "b", [29]) == [29]
    seen: set = set()
    with pytest.warns(MissingReferenceWarning, match="task 'a' has no reference energy for Pt, Au"):
        assert warn_unreferenced(refs, "a", [78, 79], seen) == [78, 79]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_unreferenced(refs, "a", [79, 29], seen) == []  # once per (task, element)


def test_calculator_warns_once_for_an_element_without_reference(checkpoint, tmp_path):
    from ase.build import bulk

    path = _drop_reference(checkpoint, tmp_path, "b", 79)
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms.symbols[0] = "Au"
    calc = OmniCalculator(str(path), task="b")
    with pytest.warns(MissingReferenceWarning, match="task 'b' has no reference energy for Au") as rec:
        atoms.calc = calc
        atoms.get_potential_energy()
        atoms.rattle(0.01, seed=1)
        atoms.get_potential_energy()
    assert len([w for w in rec if w.category is MissingReferenceWarning]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms.calc = OmniCalculator(str(path), task="a")  # task a still has Au
        atoms.get_potential_energy()


def test_evaluate_warns_once_for_the_elements_without_reference(checkpoint, other_domain, tmp_path):
    path = _drop_reference(checkpoint, tmp_path, "a", 79)
    ck = torch.load(path, weights_only=True)
    ck["references"]["a"].pop("29")
    torch.save(ck, path)
    with pytest.warns(MissingReferenceWarning, match="task 'a' has no reference energy for Cu, Au") as rec:
        evaluate_checkpoint(str(path), str(other_domain), split="test", calibration_split="val", head="a")
    assert len([w for w in rec if w.category is MissingReferenceWarning]) == 1
