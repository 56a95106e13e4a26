"""OMol25 is split by spin into omol25_low / omol25_high at ingest, from the manifest's task_rules."""

from __future__ import annotations

from collections import Counter

from ase_db_backends.aselmdb import LMDBDatabase

from omni_data.cli.main import main
from omni_data.store import Store


def test_omol25_reactivity_sample_split_by_spin(tmp_path, shared_data):
    src = shared_data / "aselmdb" / "chemreporter_omol25_reactivity_samples.aselmdb"
    # independent count with the reference reader: (charge, spin) pairs, spin = multiplicity
    with LMDBDatabase(src, readonly=True) as db:
        spins = Counter(int(row.data["spin"]) for row in db.select())
    assert spins == Counter({1: 50, 3: 10})
    store = tmp_path / "omol"
    assert main(["ingest", "omol25", "--source", str(src), "--out", str(store), "--no-cluster", "--no-progress"]) == 0
    s = Store(store)
    by_task = Counter(rec.task for rec in s)
    assert by_task == Counter({"omol25_low": 50, "omol25_high": 10})
    assert all((rec.spin >= 3) == (rec.task == "omol25_high") for rec in s)
