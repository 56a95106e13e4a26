"""verify names exactly which shard file is corrupt or missing."""
from __future__ import annotations

import shutil

from omni_data.store import verify_store, write_shard
from omni_data.store.testing import emt_records


def _store(tmp_path):
    write_shard(tmp_path, "s-a", emt_records(4, seed=1))
    write_shard(tmp_path, "s-b", emt_records(4, seed=2))
    return tmp_path


def test_clean_store_verifies(tmp_path):
    report = verify_store(_store(tmp_path))
    assert report.ok and report.shards == 2 and report.files == 4


def test_corrupted_and_missing_shards_are_named(tmp_path):
    root = _store(tmp_path)
    arrow = root / "shards" / "s-a.arrow"
    data = bytearray(arrow.read_bytes())
    data[len(data) // 2] ^= 0xFF
    arrow.write_bytes(bytes(data))
    (root / "shards" / "s-b.lmdb").unlink()
    report = verify_store(root)
    assert not report.ok
    assert any("'s-a' arrow file shards/s-a.arrow: sha256" in p for p in report.problems)
    assert any("'s-b' lmdb file shards/s-b.lmdb: missing" in p for p in report.problems)
    assert len(report.problems) == 2


def test_orphan_files_are_notes_not_problems(tmp_path):
    root = _store(tmp_path)
    shutil.copy(root / "shards" / "s-a.arrow", root / "shards" / "leftover.arrow")
    report = verify_store(root)
    assert report.ok and report.notes == ["shards/leftover.arrow: not in the catalog (leftover of an interrupted write)"]


def test_a_row_table_that_misleads_is_named(tmp_path):
    """A row table written wrong (the catalog's sha256 recorded after it, so only the table check
    can see it) is a problem naming the shard, file and first bad row."""
    import json

    from omni_data.store.writer import sha256_file
    from omni_data.store.testing import swap_row_table_entries

    root = _store(tmp_path)
    lmdb_file = root / "shards" / "s-b.lmdb"
    swap_row_table_entries(lmdb_file, 0, 2)
    catalog = json.loads((root / "catalog.json").read_text())
    entry = next(s for s in catalog["shards"] if s["name"] == "s-b")
    entry["files"]["lmdb"]["sha256"] = sha256_file(lmdb_file)
    (root / "catalog.json").write_text(json.dumps(catalog))
    report = verify_store(root)
    assert report.problems == ["shard 's-b' lmdb file shards/s-b.lmdb: cannot be read (ValueError: row table: "
                               "2 of 4 rows do not lead to their record (first: row 0))"]
