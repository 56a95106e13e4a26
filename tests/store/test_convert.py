"""Store format 1 (written by Omni before store v2): refused with one line saying how to convert,
and ``omni-data convert-store`` carries every record over.

``tests/store/data/v1_store`` was written by the format-1 writer (the code of commit 1080cc2,
run with its pure-Python codec): shard ``emt-a-000000000`` (Arrow + LMDB, 4 records, one
quarantined input), shard ``emt-b-000000000`` (LMDB only, 2 records) and an id index segment.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from omni_data.cli.main import main
from omni_data.store import Store, verify_store
from omni_data.store.testing import assert_same_records, emt_records

V1 = Path(__file__).parent / "data" / "v1_store"


def _expected():
    records = emt_records(6, seed=3)
    records[0].metadata = {"note": "v1", "k": [1, 2]}
    return records


def test_opening_a_format_1_store_says_which_format_and_the_command(tmp_path, capsys):
    with pytest.raises(ValueError) as info:
        Store(V1)
    assert str(info.value) == (
        f"{V1}: store format 1 (Omni before store v2); convert it with `omni-data convert-store {V1} NEW_STORE`"
    )
    assert "\n" not in str(info.value)
    assert main(["info", str(V1)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "convert-store" in err


def test_convert_store_carries_every_record_quarantine_and_section(tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(V1, old)
    before = sorted((p.relative_to(old), p.read_bytes()) for p in old.rglob("*") if p.is_file())
    assert main(["convert-store", str(old), str(tmp_path / "new"), "--no-progress"]) == 0
    assert "6 records in 2 shards" in capsys.readouterr().out
    store = Store(tmp_path / "new")
    expected = _expected()
    assert_same_records(expected, list(store))
    assert store[0].metadata == {"note": "v1", "k": [1, 2]}
    assert_same_records([expected[5]], [store.get(expected[5].id)])
    assert store.quarantine().column("reason").to_pylist() == ["nonfinite:energy"]
    assert store.catalog.runs[-1]["kind"] == "convert-store"
    assert verify_store(tmp_path / "new").ok
    # OLD is only read
    assert sorted((p.relative_to(old), p.read_bytes()) for p in old.rglob("*") if p.is_file()) == before
    # a second conversion into the same folder is refused, as is converting a format-2 store
    assert main(["convert-store", str(old), str(tmp_path / "new")]) == 1  # NEW exists
    assert main(["convert-store", str(tmp_path / "new"), str(tmp_path / "newer")]) == 2
    assert "already store format 2" in capsys.readouterr().err
