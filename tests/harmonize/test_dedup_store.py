"""Duplicate finding across real-data stores and dropping within a task."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest

from omni_data.harmonize import dedup as D
from omni_data.store import Store
from tests.harmonize.conftest import atoms_record, make_store


@pytest.fixture(scope="module")
def two_stores(shared_data, tmp_path_factory):
    frames = ase.io.read(shared_data / "vasp/chgnet_nboc_relax_49steps.vasprun.xml", index=":12")
    a = [atoms_record(f, "pbe", "relax", i, source_file="relax") for i, f in enumerate(frames)]
    # copies: frame 3 again (permuted) in the same task, frame 5 in another dataset/task
    copy3 = frames[3][np.random.default_rng(0).permutation(len(frames[3]))]
    a.append(atoms_record(copy3, "pbe", "relax", 100, source_file="relax-copy"))
    b = [atoms_record(frames[5], "r2scan", "other", 0), atoms_record(frames[11], "pbe", "other", 1)]
    root = tmp_path_factory.mktemp("dedup")
    s1 = make_store(root / "s1", {"x0": a[:7], "x1": a[7:]})
    s2 = make_store(root / "s2", {"y0": b})
    return s1, s2


def test_summary_counts_within_and_across(two_stores):
    s1, s2 = two_stores
    table = D.hash_stores([str(s1.path), str(s2.path)], workers=1)
    assert len(table) == 13 + 2
    summary = D.summarize(table, D.DEFAULT_TOL)
    assert summary["within_task"] == {"pbe": 2, "r2scan": 0}  # frame 3 copy; frame 11 in both stores
    assert summary["within_dataset"] == {"relax": 1, "other": 0}
    assert summary["across_datasets"] == 2  # frames 5 and 11
    assert ["relax:100", "relax:3"] in summary["examples"]
    # sidecars written per shard
    assert (s1.path / "sidecars/dedup/x0.parquet").is_file()


def test_drop_within_task_writes_store_and_quarantine(two_stores, tmp_path):
    s1, _ = two_stores
    table = D.hash_stores([str(s1.path)])
    counts = D.drop_within_task(table, [str(s1.path)], str(tmp_path / "out"))
    assert counts == {"kept": 12, "dropped": 1}
    out = Store(tmp_path / "out")
    assert len(out) == 12
    q = out.quarantine().to_pylist()
    assert [r["reason"] for r in q] == ["duplicate:of relax:3"] and q[0]["source_id"] == "relax:100"
