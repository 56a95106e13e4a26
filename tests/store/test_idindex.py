"""The store's id index (``omni_data/store/idindex.py``): one lookup for ``get(id)``."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from omni_data.cli.main import main
from omni_data.store import Store, idindex, write_shard
from omni_data.store.catalog import Catalog
from omni_data.store.testing import assert_same_records, emt_records, write_extxyz
from omni_data.store.verify import verify_store


def make_store(path, shards: int = 5, per: int = 7, formats=("arrow", "lmdb"), dataset: str = "emt"):
    records = emt_records(shards * per, seed=1, dataset=dataset)
    # shard names out of id order, so global order, id order and shard order all differ
    for k in range(shards):
        write_shard(path, f"s{(k * 3) % shards:02d}-{k}", records[k::shards], formats=formats)
    return records


def lookups(store: Store, ids: list[str]) -> list[int]:
    return [store.index_of(i) for i in ids]


def test_index_gives_the_same_answers_as_asking_every_shard(tmp_path):
    records = make_store(tmp_path / "s")
    store = Store(tmp_path / "s")
    ids = [r.id for r in records]
    before = lookups(store, ids)
    assert sorted(before) == list(range(len(records)))
    report = idindex.build_id_index(tmp_path / "s")
    assert report.ids == len(records) and report.shards == 5 and report.segment.startswith("index/ids-")
    store.refresh()
    assert store._id_index().covered == set(store.shard_names)
    assert lookups(store, ids) == before
    assert_same_records(records, [store.get(i) for i in ids])
    with pytest.raises(KeyError, match="no record with id 'emt:nope'"):
        store.get("emt:nope")
    assert verify_store(tmp_path / "s").ok


def test_lookups_use_only_the_index_once_it_covers_every_shard(tmp_path, monkeypatch):
    records = make_store(tmp_path / "s")
    idindex.build_id_index(tmp_path / "s")
    store = Store(tmp_path / "s")

    def refuse(self, k):
        raise AssertionError("a covered shard was asked")

    monkeypatch.setattr(Store, "_ids_of", refuse)
    assert store.index_of(records[3].id) == lookups(store, [records[3].id])[0]
    with pytest.raises(KeyError):
        store.index_of("emt:absent")


def test_new_shards_are_found_before_and_after_indexing(tmp_path):
    records = make_store(tmp_path / "s")
    idindex.build_id_index(tmp_path / "s")
    extra = [dataclasses.replace(r, id=f"more:{k}", dataset="more") for k, r in enumerate(emt_records(4, seed=9))]
    write_shard(tmp_path / "s", "zz-more", extra)
    store = Store(tmp_path / "s")
    assert store.get("more:2").id == "more:2" and store.index_of(records[0].id) >= 0  # not covered yet
    second = idindex.build_id_index(tmp_path / "s")
    assert second.shards == 1 and second.ids == 4
    assert idindex.build_id_index(tmp_path / "s").segment is None  # nothing left to do
    store.refresh()
    section = Catalog(tmp_path / "s").sections["id_index"]
    assert [seg["datasets"] for seg in section["segments"]] == [["emt"], ["more"]]
    expected = lookups(store, [r.id for r in records + extra])
    merged = idindex.build_id_index(tmp_path / "s", rebuild=True)
    # the replaced segments stay (retired) for readers opened before the rebuild
    assert merged.ids == len(records) + 4 and merged.removed == []
    retired = Catalog(tmp_path / "s").sections["id_index"]["retired"]
    assert len(retired) == 2 and all((tmp_path / "s" / r["file"]).is_file() for r in retired)
    assert lookups(store, [r.id for r in records + extra]) == expected  # the old snapshot still reads
    store.refresh()
    assert lookups(store, [r.id for r in records + extra]) == expected
    assert verify_store(tmp_path / "s").ok


def test_many_shards_merge_through_sorted_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(idindex, "FAN_IN", 2)  # 9 shards -> runs of 2, then runs of runs
    records = make_store(tmp_path / "s", shards=9, per=3)
    store = Store(tmp_path / "s")
    before = lookups(store, [r.id for r in records])
    idindex.build_id_index(tmp_path / "s")
    store.refresh()
    assert lookups(store, [r.id for r in records]) == before
    assert not list((tmp_path / "s" / "index").glob(".build-*"))  # scratch runs removed


def test_arrow_only_shards_are_indexed(tmp_path):
    records = make_store(tmp_path / "s", formats=("arrow",))
    store = Store(tmp_path / "s", backend="arrow")
    before = lookups(store, [r.id for r in records])
    idindex.build_id_index(tmp_path / "s")
    store.refresh()
    assert lookups(store, [r.id for r in records]) == before


def test_an_id_in_two_shards_is_an_error_naming_both(tmp_path):
    records = emt_records(4, seed=2)
    write_shard(tmp_path / "s", "a", records[:3])
    write_shard(tmp_path / "s", "b", [records[1]] + records[3:])  # writers check ids within a shard only
    with pytest.raises(ValueError, match=r"id 'emt:.*' is in shards 'a' and 'b'"):
        idindex.build_id_index(tmp_path / "s")
    assert "id_index" not in Catalog(tmp_path / "s").sections
    assert list((tmp_path / "s" / "index").iterdir()) == []  # no temporary file left


def test_a_failed_catalog_update_leaves_no_segment_behind(tmp_path, monkeypatch):
    """The segment was written and renamed, then the catalog update failed: the segment file is
    removed (it was never listed), so the store is as before and verify has nothing to say."""
    records = make_store(tmp_path / "s")

    def fail(store_dir, change):
        raise OSError("disk gone")

    monkeypatch.setattr(idindex, "update_catalog", fail)
    with pytest.raises(OSError, match="disk gone"):
        idindex.build_id_index(tmp_path / "s")
    monkeypatch.undo()
    assert list((tmp_path / "s" / "index").iterdir()) == []
    report = verify_store(tmp_path / "s")
    assert report.ok and report.notes == []
    store = Store(tmp_path / "s")
    assert store.get(records[5].id).id == records[5].id  # found by asking the shards
    idindex.build_id_index(tmp_path / "s")  # a re-run finishes the job
    assert len(Catalog(tmp_path / "s").sections["id_index"]["segments"]) == 1


def test_verify_catches_a_damaged_segment(tmp_path):
    make_store(tmp_path / "s")
    report = idindex.build_id_index(tmp_path / "s")
    path = tmp_path / "s" / report.segment
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = verify_store(tmp_path / "s").problems
    assert any("id_index file index/ids-" in p and "sha256" in p for p in problems)


def test_store_pickles_with_its_index(tmp_path):
    records = make_store(tmp_path / "s")
    idindex.build_id_index(tmp_path / "s")
    store = Store(tmp_path / "s")
    store.get(records[0].id)  # opens the index here
    clone = pickle.loads(pickle.dumps(store))
    assert clone.get(records[4].id).id == records[4].id


def test_cli_ingest_indexes_and_info_reports_coverage(tmp_path, capsys):
    src = write_extxyz(emt_records(10, seed=3), tmp_path / "d.extxyz")
    store = tmp_path / "st"
    assert (
        main(
            [
                "ingest",
                str(src),
                "--out",
                str(store),
                "--dataset",
                "d",
                "--task",
                "pbe",
                "--no-cluster",
                "--shard-size",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "indexed 10 ids of 3 shards" in capsys.readouterr().out
    assert main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["id_index"] == {"segments": 1, "shards_covered": 3, "shards": 3} and info["bytes"]["id_index"] > 0
    src2 = write_extxyz(emt_records(5, seed=4), tmp_path / "e.extxyz")
    assert (
        main(
            [
                "ingest",
                str(src2),
                "--out",
                str(store),
                "--dataset",
                "e",
                "--task",
                "pbe",
                "--no-cluster",
                "--no-progress",
                "--no-id-index",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["info", str(store)]) == 0
    assert "covers 3 of 4 shards (run `omni-data index`" in capsys.readouterr().out
    assert main(["index", str(store), "--no-progress"]) == 0
    assert "indexed 5 ids of 1 shards" in capsys.readouterr().out
    assert main(["index", str(store), "--rebuild", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "indexed 15 ids of 4 shards" in out and "removed the replaced segment" not in out
    assert main(["verify", str(store)]) == 0
    assert main(["index", str(tmp_path / "nope")]) == 1


# --- a full disk during the id-index step (issue 17, item 9b)


@pytest.mark.parametrize("leave", [0, 8192], ids=["nothing", "two pages"])
def test_full_disk_names_the_index_file_and_leaves_nothing(tmp_path, leave):
    """No room for the segment: ENOSPC naming the segment file (not an lmdb.Error), no temp file
    or scratch folder left, the catalog untouched; with room again a re-run indexes everything."""
    import errno

    from tests.store.diskfull import fill, small_filesystem

    with small_filesystem(tmp_path / "fs") as fs:
        store_dir = fs / "s"
        records = make_store(store_dir, shards=4, per=50)
        catalog = (store_dir / "catalog.json").read_bytes()
        filler = fill(fs, leave)
        with pytest.raises(OSError) as info:
            idindex.build_id_index(store_dir)
        assert info.value.errno == errno.ENOSPC
        message = str(info.value)
        assert message.startswith(f"[Errno 28] {store_dir / 'index' / 'ids-'}")
        assert ".lmdb: No space left on device (id index of 200 ids; the shards are intact" in message
        assert list((store_dir / "index").iterdir()) == []
        assert (store_dir / "catalog.json").read_bytes() == catalog
        report = verify_store(store_dir)
        assert report.ok and report.notes == [] and report.temporaries == []
        filler.unlink()
        assert idindex.build_id_index(store_dir).ids == 200
        store = Store(store_dir)
        assert store.get(records[123].id).id == records[123].id


def test_index_cli_on_a_full_disk_is_one_line(tmp_path, capsys):
    from tests.store.diskfull import fill, small_filesystem

    with small_filesystem(tmp_path / "fs") as fs:
        make_store(fs / "s", shards=2, per=10)
        fill(fs, 0)
        assert main(["index", str(fs / "s"), "--no-progress"]) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"omni-data index: error: [Errno 28] {fs / 's' / 'index' / 'ids-'}")
        assert "No space left on device" in line and "Traceback" not in line


def test_ingest_cli_with_a_full_disk_at_the_id_index_step(tmp_path, monkeypatch, capsys):
    """The shards fit but the id index does not: ingest reports its summary, then one line naming
    the index file and ENOSPC, exits 1, and leaves no temporary file; `omni-data index` finishes later."""
    from tests.store.diskfull import fill, small_filesystem

    real = idindex.build_id_index
    filled = []

    def fill_then_build(store_dir, **kwargs):  # the disk fills up between the shards and the index
        filled.append(fill(fs, 0))
        return real(store_dir, **kwargs)

    monkeypatch.setattr(idindex, "build_id_index", fill_then_build)
    with small_filesystem(tmp_path / "fs") as fs:
        src = write_extxyz(emt_records(30, seed=3), tmp_path / "a.extxyz")
        store_dir = fs / "st"
        code = main(
            [
                "ingest",
                str(src),
                "--dataset",
                "emt",
                "--task",
                "pbe",
                "--out",
                str(store_dir),
                "--shard-size",
                "10",
                "--no-progress",
                "--no-cluster",
            ]
        )
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err
        (line,) = [x for x in err.splitlines() if "id index" in x]
        assert line.startswith(f"omni-data ingest: error: id index: [Errno 28] {store_dir / 'index' / 'ids-'}")
        assert "No space left on device" in line
        assert len(Catalog(store_dir).shards) == 3
        report = verify_store(store_dir)
        assert report.ok and report.temporaries == []
        filled[0].unlink()
        monkeypatch.undo()
        assert main(["index", str(store_dir), "--no-progress"]) == 0
        assert len(Catalog(store_dir).sections["id_index"]["segments"]) == 1
