"""catalog.json updates: locked read-modify-write, totals recomputed, concurrent writers all land."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from omni_data.store.catalog import Catalog, add_shards, read_catalog


def _entry(name: str, records: int, task: str = "t") -> dict:
    return {
        "name": name,
        "records": records,
        "atoms": 2 * records,
        "files": {},
        "by_task": {task: records},
        "by_dataset": {"d": records},
        "by_element": {"H": records},
        "quarantined": 1,
        "quarantined_by_reason": {"parse": 1},
    }


def _add_many(args):
    root, prefix = args
    for i in range(15):
        add_shards(root, [_entry(f"{prefix}-{i:02d}", 1)])


def test_totals_are_recomputed_from_shards(tmp_path):
    add_shards(tmp_path, [_entry("b", 3, "x"), _entry("a", 2, "y")])
    data = read_catalog(tmp_path)
    assert [s["name"] for s in data["shards"]] == ["a", "b"]  # sorted: global order is stable
    assert data["counts"]["records"] == 5 and data["counts"]["atoms"] == 10
    assert data["counts"]["by_task"] == {"x": 3, "y": 2} and data["counts"]["quarantined_by_reason"] == {"parse": 2}
    with pytest.raises(ValueError, match="'a' is already in the catalog"):
        add_shards(tmp_path, [_entry("c", 1), _entry("a", 1)])
    assert len(Catalog(tmp_path).shards) == 2  # all-or-nothing


def test_concurrent_writers_lose_nothing(tmp_path):
    with mp.get_context("fork").Pool(3) as pool:
        pool.map(_add_many, [(tmp_path, p) for p in ("p", "q", "r")])
    data = json.loads((tmp_path / "catalog.json").read_text())
    assert len(data["shards"]) == 45 and data["counts"]["records"] == 45
    assert not list(tmp_path.glob(".catalog.json.tmp-*"))


def test_unknown_schema_version_is_refused(tmp_path):
    add_shards(tmp_path, [_entry("a", 1)])
    data = json.loads((tmp_path / "catalog.json").read_text())
    data = json.loads((tmp_path / "catalog.json").read_text())
    data["schema_version"] = 99
    from omni_data.store.catalog import write_catalog

    write_catalog(tmp_path, data)
    with pytest.raises(ValueError, match="schema_version 99"):
        Catalog(tmp_path)


def test_catalog_text_is_one_line_per_shard_and_round_trips(tmp_path):
    """dump_catalog writes each shard entry on one line (a 24,000-shard catalog stays fast to
    write and greppable) and the rest indented; json.loads gives back exactly what was written."""
    from omni_data.store.catalog import dump_catalog, update_catalog

    entries = [_entry(f"s{i:02d}", i + 1) for i in range(5)]
    entries[2]["note"] = 'two\nlines, "quoted", ünïcode'  # escapes inside one line
    add_shards(tmp_path, entries)
    update_catalog(tmp_path, lambda d: d["sections"].update({"id_index": {"segments": [{"file": "a", "ids": 3}]}}))
    text = (tmp_path / "catalog.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert data.pop("crc32c") and data == read_catalog(tmp_path)
    assert json.loads(dump_catalog(data)) == {"crc32c": text.split('"')[3], **data}
    assert [s["name"] for s in data["shards"]] == [f"s{i:02d}" for i in range(5)]
    lines = text.splitlines()
    shard_lines = [line for line in lines if line.startswith('  {"name": ')]
    assert len(shard_lines) == 5 and all(
        json.loads(line.rstrip(","))["records"] == i + 1 for i, line in enumerate(shard_lines)
    )
    assert ' "counts": {' in lines and '  "records": 15,' in lines  # everything else indented
    empty = {"schema_version": 1, "shards": [], "sections": {}}
    assert {k: v for k, v in json.loads(dump_catalog(empty)).items() if k != "crc32c"} == empty


def test_reader_view_leaves_out_per_shard_detail_only(tmp_path):
    """What a Store holds: no per-shard element counts, quarantine reasons or checksums; every
    store-wide total, section and the rest of each entry as on disk."""
    from omni_data.store.catalog import reader_view

    entries = [_entry(f"s{i}", i + 1) for i in range(3)]
    entries[1]["files"] = {"lmdb": {"file": "shards/s1.lmdb", "sha256": "ab" * 32, "bytes": 10}}
    add_shards(tmp_path, entries)
    full = Catalog(tmp_path)
    slim = Catalog(tmp_path, reader=True)
    assert slim.counts == full.counts and slim.counts["by_element"] == {"H": 6}
    assert slim.shard("s1") == {
        "name": "s1",
        "records": 2,
        "atoms": 4,
        "by_task": {"t": 2},
        "by_dataset": {"d": 2},
        "quarantined": 1,
        "files": {"lmdb": {"file": "shards/s1.lmdb", "bytes": 10}},
    }
    assert reader_view(full.data) == slim.data  # parsing with the hook == trimming afterwards
    assert full.shard("s1")["files"]["lmdb"]["sha256"] == "ab" * 32  # the full catalog is untouched
    slim.update_section("notes", {"a": 1})  # a reader catalog stays slim; the file keeps everything
    assert "by_element" not in slim.shard("s0") and slim.sections["notes"] == {"a": 1}
    assert read_catalog(tmp_path)["shards"][0]["by_element"] == {"H": 1}
    assert "by_element" not in slim.reload().shard("s2") and slim.shard("nope") is None


def test_a_store_holds_and_pickles_the_reader_view(tmp_path):
    import pickle

    from omni_data.store import Store, write_shard
    from omni_data.store.testing import emt_records

    write_shard(tmp_path, "a", emt_records(3, seed=1))
    store = Store(tmp_path)
    assert "by_element" not in store.catalog.shard("a") and store.catalog.counts["by_element"]
    assert "sha256" not in store.catalog.shard("a")["files"]["lmdb"]
    again = pickle.loads(pickle.dumps(store))
    assert again.catalog.data == store.catalog.data and again[2].id == store[2].id


@pytest.mark.parametrize("leave", [0, 4096], ids=["nothing", "one page"])
def test_full_disk_leaves_no_catalog_temp_and_the_old_catalog(tmp_path, leave):
    """No room for the new catalog (issue 17, item 9c): ENOSPC naming catalog.json, the old
    catalog unchanged, and no ``.catalog.json.tmp-*`` left behind."""
    import errno

    from tests.store.diskfull import fill, small_filesystem

    with small_filesystem(tmp_path / "fs", "2m") as fs:
        store = fs / "st"
        add_shards(store, [_entry("a", 1)])
        before = (store / "catalog.json").read_bytes()
        fill(fs, leave)
        many = [_entry(f"b-{i:04d}", 1) for i in range(200)]  # ~60 KB of catalog: more than is left
        with pytest.raises(OSError) as info:
            add_shards(store, many)
        assert info.value.errno == errno.ENOSPC
        assert str(info.value) == f"[Errno 28] {store / 'catalog.json'}: No space left on device"
        assert (store / "catalog.json").read_bytes() == before
        assert sorted(p.name for p in store.iterdir()) == [".catalog.lock", "catalog.json"]


def test_catalog_checksum_line_catches_damage_and_hand_edits(tmp_path):
    add_shards(tmp_path, [_entry("a", 1), _entry("b", 2)])
    path = tmp_path / "catalog.json"
    text = path.read_text()
    assert text.startswith('{"crc32c": "') and json.loads(text)["crc32c"]
    assert "crc32c" not in Catalog(tmp_path).data
    path.write_text(text.replace('"records": 2', '"records": 3'))  # still valid JSON
    with pytest.raises(ValueError, match="catalog.json: checksum mismatch"):
        Catalog(tmp_path)
    path.write_text(json.dumps(json.loads(text)).replace('"crc32c"', '"note"'))
    with pytest.raises(ValueError, match="catalog.json: no checksum line"):
        Catalog(tmp_path)
