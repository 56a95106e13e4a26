"""Store -> graphs: labels arrive unchanged, store splits are honoured, reference fit is exact."""

from __future__ import annotations

import numpy as np
import pytest

from omni_model.data.dataset import GraphDataset, fit_references, split_indices, store_columns

from ..conftest import emt_structures, make_store


def test_graphs_carry_the_store_labels(tmp_path):
    from omni_data.store import Store

    path = make_store(tmp_path / "s", n=4, tasks=("a", "b"), energy_offset={"a": 0.0, "b": 0.0})
    store = Store(path)
    ds = GraphDataset(store, np.arange(len(store)), 4.0, [29, 78, 79], ["a", "b"])
    for k, atoms in enumerate(emt_structures(4)):
        g = ds[k]
        assert g.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(g.forces, atoms.get_forces(), atol=1e-12)
        if atoms.pbc.all():
            np.testing.assert_allclose(g.stress, atoms.get_stress(), atol=1e-12)
        else:
            assert g.stress is None  # the slab has no stress label: masked, not zero
        assert g.task == k % 2
        assert ds[k] is g  # cached: the neighbour list is built once


def test_unknown_task_is_an_error_naming_the_store(tmp_path):
    from omni_data.store import Store

    store = Store(make_store(tmp_path / "s", n=2))
    with pytest.raises(ValueError, match="tasks \\['b'\\] are not in the model's tasks"):
        GraphDataset(store, np.arange(2), 4.0, [29, 78, 79], ["a"])


def test_store_splits_are_used_when_present(tmp_path):
    from omni_data.harmonize.splits import split_of, split_store
    from omni_data.store import Store

    path = make_store(tmp_path / "s", n=20)
    store = Store(path)
    train, valid, how = split_indices(store, 0.25, seed=0)
    assert how.startswith("random") and len(valid) == 5 and not set(train) & set(valid)
    split_store(path, fractions=(0.6, 0.2, 0.2), seed=3)
    store = Store(path)
    train, valid, how = split_indices(store, 0.25, seed=0)
    labels = split_of(store)
    assert how.startswith("store splits")
    assert list(train) == list(np.flatnonzero(labels == "train"))
    assert list(valid) == list(np.flatnonzero(labels == "val"))


def test_reference_fit_recovers_exact_composition_energies(tmp_path):
    from omni_data.store import Store, write_shard

    from ..conftest import atoms_record

    mu = {"a": {29: -3.5, 78: -6.0, 79: -3.0}, "b": {29: -1.0, 78: -2.5, 79: -2.0}}
    recs = []
    for i, atoms in enumerate(emt_structures(12, seed=5)):
        task = "ab"[i % 2]
        r = atoms_record(atoms, i, task)
        r.energy = float(sum(mu[task][int(z)] for z in atoms.numbers))
        recs.append(r)
    write_shard(tmp_path / "s", "p0", recs)
    store = Store(tmp_path / "s")
    cols = store_columns(store)
    refs = fit_references(store, np.arange(len(store)), [29, 78, 79], ["a", "b"], cols["task"])
    for task in ("a", "b"):
        for z, v in mu[task].items():
            assert refs[task][z] == pytest.approx(v, abs=1e-8)


def test_reference_fit_gives_no_reference_for_an_element_a_task_lacks(tmp_path):
    from omni_data.store import Store, write_shard

    from ..conftest import atoms_record

    recs = []
    for i, atoms in enumerate(emt_structures(12, seed=5)):
        task = "a" if 78 in atoms.numbers else "b"  # every Pt structure goes to task a
        r = atoms_record(atoms, i, task)
        r.energy = float(sum({29: -3.5, 78: -6.0, 79: -3.0}[int(z)] for z in atoms.numbers))
        recs.append(r)
    write_shard(tmp_path / "s", "p0", recs)
    store = Store(tmp_path / "s")
    cols = store_columns(store)
    refs = fit_references(store, np.arange(len(store)), [29, 78, 79], ["a", "b"], cols["task"])
    assert 78 not in refs["b"]  # not a made-up 0 eV: absent, so evaluation can warn about it
    assert refs["b"][29] == pytest.approx(-3.5, abs=1e-8) and refs["b"][79] == pytest.approx(-3.0, abs=1e-8)
