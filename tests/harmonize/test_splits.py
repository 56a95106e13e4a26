"""Group splits on a real store of VASP relaxation/MD frames grouped by source file."""

from __future__ import annotations

from collections import defaultdict

import ase.io
import pytest

from omni_data.harmonize import splits as S
from omni_data.store import Store
from tests.harmonize.conftest import atoms_record, make_store

VASP = [
    "vasp/chgnet_nboc_relax_49steps.vasprun.xml",
    "vasp/custodian_postprocess_ggau_spin_relax.OUTCAR",
    "vasp/dpdata_h2o_md.vasprun.xml",
    "vasp/dpdata_ch4_md_unconverged.OUTCAR",
    "vasp/dpdata_6362_relax_truncated.OUTCAR",
    "vasp/custodian_lobster_v51_static_nonspin.OUTCAR",
]


@pytest.fixture(scope="module")
def vasp_store(shared_data, tmp_path_factory):
    recs = []
    for name in VASP:
        for i, atoms in enumerate(ase.io.read(shared_data / name, index=":")):
            recs.append(atoms_record(atoms, "pbe", "vasp", len(recs), source_file=name))
    path = tmp_path_factory.mktemp("splits") / "store"
    # shards cut across groups on purpose: a group's frames sit in two shards
    return make_store(path, {"s0": recs[:40], "s1": recs[40:70], "s2": recs[70:]}), recs


def test_no_group_straddles_and_labels_cover_store(vasp_store):
    store, recs = vasp_store
    section = S.split_store(store.path, (0.5, 0.25, 0.25), seed=3, group_keys={"vasp": "source_file"})
    store = Store(store.path)
    labels = S.split_of(store)
    assert len(labels) == len(store) == len(recs)
    by_group = defaultdict(set)
    for rec, label in zip(recs, labels):
        by_group[rec.source_file].add(label)
    assert len(by_group) == len(VASP)
    assert all(len(v) == 1 for v in by_group.values())
    # the catalog records what was done, and the counts add up
    assert store.catalog.sections["splits"]["seed"] == 3
    assert sum(section["counts"].values()) == len(recs)
    ids = {s: S.ids_in_split(store, s) for s in S.SPLITS}
    assert sorted(sum(ids.values(), [])) == sorted(r.id for r in recs)
    # each group's split equals the hash rule computed by hand
    for group, (label,) in by_group.items():
        u = S.bucket(f"vasp\x00{group}", 3)
        assert label == ("train" if u < 0.5 else "val" if u < 0.75 else "test")


def test_same_answer_with_two_workers(vasp_store, tmp_path):
    store, _ = vasp_store
    S.split_store(store.path, seed=11, group_keys={"vasp": "source_file"}, workers=1)
    one = S.split_of(Store(store.path)).tolist()
    S.split_store(store.path, seed=11, group_keys={"vasp": "source_file"}, workers=2)
    assert S.split_of(Store(store.path)).tolist() == one


def test_fractions_follow_the_hash_over_many_groups():
    labels = [S.assign(f"g{i}", (0.8, 0.1, 0.1), seed=0) for i in range(20000)]
    frac = {s: labels.count(s) / len(labels) for s in S.SPLITS}
    # binomial std for p=0.1, n=20000 is 0.0021; allow 4 sigma
    assert abs(frac["train"] - 0.8) < 0.012 and abs(frac["val"] - 0.1) < 0.009


def test_bad_inputs_are_named(vasp_store):
    store, recs = vasp_store
    with pytest.raises(ValueError, match="fractions"):
        S.check_fractions((0.8, 0.3, 0.1))
    with pytest.raises(KeyError, match="group key 'smiles'"):
        S.group_value(recs[0], "smiles")
    recs[0].metadata["conf"] = 4
    assert S.group_value(recs[0], "metadata.conf") == "4"
    with pytest.raises(ValueError, match="unknown split"):
        S.ids_in_split(store, "dev")
