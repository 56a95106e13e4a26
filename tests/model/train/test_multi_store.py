"""Training the small preset on two stores read as one (one store per database, one model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from omni_data.harmonize.references import fit_store, load_references, write_references
from omni_data.store import Store, StoreSet, write_shard
from omni_model.cli import main as omni_train
from omni_model.config import PRESETS_DIR, config_from_dict
from omni_model.train.checkpoint import load_checkpoint
from omni_model.train.trainer import Trainer

from ..conftest import atoms_record, emt_structures


def emt_store(path, dataset: str, task: str, offset: float, seed: int, n: int = 8):
    """A real store of one dataset and one task; energies shifted by ``offset`` eV/atom."""
    recs = []
    for i, a in enumerate(emt_structures(n, seed)):
        r = atoms_record(a, i, task, dataset=dataset)
        r.energy += offset * len(a)
        recs.append(r)
    write_shard(path, f"{dataset}-0", recs)
    return path


@pytest.fixture
def two_stores(tmp_path):
    return (
        emt_store(tmp_path / "pbe_db", "dba", "pbe", 0.0, seed=1),
        emt_store(tmp_path / "r2scan_db", "dbb", "r2scan", -2.0, seed=2),
    )


def small_preset(stores, out, steps: int = 3) -> dict:
    """The packaged ``small`` preset, data.store a list, one short stage."""
    d = yaml.safe_load((PRESETS_DIR / "small.yaml").read_text())
    d["data"]["store"] = [str(s) for s in stores]
    d["run"].update({"out_dir": str(out), "progress": False, "device": "cpu", "checkpoint_every": 100})
    d["stages"] = [{"name": "mixed", "steps": steps}]
    return d


def test_small_preset_trains_on_two_stores_with_references_from_both(tmp_path, two_stores):
    for s in two_stores:
        write_references(Store(s), fit_store(str(s)))
    want = {**load_references(Store(two_stores[0])), **load_references(Store(two_stores[1]))}
    tr = Trainer(config_from_dict(small_preset(two_stores, tmp_path / "run")))
    assert isinstance(tr.prep.store, StoreSet) and len(tr.prep.store) == 16
    assert tr.model.tasks == ["pbe", "r2scan"]
    assert tr.prep.references_source == "store catalog section 'references'"
    assert tr.prep.references == want
    assert want["r2scan"][29] < want["pbe"][29] - 1.5  # the -2 eV/atom offset of the second store
    shift = tr.model.shift_scale.shift.detach().numpy()
    col = tr.model.elements.index(79)
    assert shift[tr.model.task_index("r2scan"), col] == pytest.approx(want["r2scan"][79])
    seen = []
    orig = tr.train_step

    def spy(graphs):
        seen.extend(g.task for g in graphs)
        return orig(graphs)

    tr.train_step = spy
    errors = tr.run()
    assert tr.step == 3 and set(seen) == {0, 1}
    assert all(math.isfinite(h["loss"]) for h in tr.history)
    assert set(errors) <= {"pbe", "r2scan"}
    ck = load_checkpoint(tmp_path / "run" / "final.pt")
    assert ck["config"]["data"]["store"] == [str(s) for s in two_stores]


def test_task_missing_from_the_sections_is_fitted_here(tmp_path, two_stores):
    write_references(Store(two_stores[0]), fit_store(str(two_stores[0])))  # only the first store
    tr = Trainer(config_from_dict(small_preset(two_stores, tmp_path / "run")))
    assert tr.prep.references["pbe"] == load_references(Store(two_stores[0]))["pbe"]
    assert "fitted here for tasks ['r2scan']" in tr.prep.references_source
    mu = tr.prep.references["r2scan"]
    recs = [r for r in StoreSet(two_stores) if r.task == "r2scan"]
    resid = [r.energy - sum(mu[int(z)] for z in r.numbers) for r in recs]
    assert np.sqrt(np.mean(np.square(resid))) / 4 < 0.5  # the fit removes the -2 eV/atom offset


def test_cli_repeated_store_and_evaluate_on_two_stores(tmp_path, two_stores, capsys):
    d = small_preset(two_stores, tmp_path / "run", steps=2)
    d["data"]["store"] = ""
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(d))
    argv = [str(path), "--store", str(two_stores[0]), "--store", str(two_stores[1])]
    assert omni_train(argv) == 0
    capsys.readouterr()
    assert omni_train(["evaluate", str(tmp_path / "run" / "final.pt"), *map(str, two_stores)]) == 0
    per_task = capsys.readouterr().out.strip().split("\n\n")[0]  # the per-task table; the transfer table follows
    rows = {line.split()[0]: int(line.split()[1]) for line in per_task.splitlines()[1:]}
    assert rows == {"pbe": 8, "r2scan": 8}
    assert omni_train([str(path), "--store", str(two_stores[0]), "--store", str(tmp_path / "missing")]) == 1
    assert f"{tmp_path / 'missing'}: not an Omni store" in capsys.readouterr().err
