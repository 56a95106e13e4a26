"""Atomic shard writes and the catalog entry they produce."""

from __future__ import annotations

import json

import numpy as np
import pytest

from omni_data.store import Catalog, sidecar_path, write_shard
from omni_data.store.testing import emt_records
from omni_data.store.writer import sha256_file, write_shard_files


def test_catalog_entry_counts_and_checksums(tmp_path):
    records = emt_records(7, seed=3, dataset="d", task="t")
    info = write_shard(tmp_path, "d-1", records)
    cat = json.loads((tmp_path / "catalog.json").read_text())
    assert cat["counts"]["records"] == 7 and cat["counts"]["by_task"] == {"t": 7}
    assert cat["counts"]["atoms"] == sum(r.n_atoms for r in records)
    # by_element counts records containing the element: worked out from the records directly
    expect = {}
    for r in records:
        for z in set(r.numbers.tolist()):
            sym = {13: "Al", 28: "Ni", 29: "Cu"}[z]
            expect[sym] = expect.get(sym, 0) + 1
    assert cat["counts"]["by_element"] == expect
    for fmt in ("columns", "lmdb"):
        meta = info.files[fmt]
        assert sha256_file(tmp_path / meta["file"]) == meta["sha256"]
        assert meta["bytes"] == (tmp_path / meta["file"]).stat().st_size
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["d-1.lmdb", "d-1.parquet"]


def test_failed_write_leaves_nothing_visible(tmp_path, monkeypatch):
    import omni_data.store.lmdb_write as lm

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(lm, "write_lmdb", boom)
    with pytest.raises(OSError, match="disk full"):
        write_shard(tmp_path, "x", emt_records(2))
    assert list((tmp_path / "shards").iterdir()) == []  # no temp file left
    assert Catalog(tmp_path).shards == []


def test_bad_input_is_refused_with_the_record_named(tmp_path):
    records = emt_records(3)
    records[1].forces[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"record 1 \('emt:0-1'\).*nonfinite:forces"):
        write_shard(tmp_path, "x", records)
    dup = emt_records(2) + emt_records(1)
    with pytest.raises(ValueError, match="duplicate id 'emt:0-0'"):
        write_shard_files(tmp_path, "y", dup)
    write_shard(tmp_path, "z", emt_records(1))
    with pytest.raises(ValueError, match="already exists"):
        write_shard(tmp_path, "z", emt_records(1))
    with pytest.raises(ValueError, match="bad shard name"):
        write_shard(tmp_path, "../evil", emt_records(1))


def test_formats_and_sections(tmp_path):
    """Store format 2 always writes both files; the format-1 names are accepted and ignored."""
    write_shard(tmp_path, "old-names", emt_records(2), formats=("arrow",))
    cat = Catalog(tmp_path)
    assert sorted(cat.shard("old-names")["files"]) == ["columns", "lmdb"]
    with pytest.raises(ValueError, match="shard formats must be"):
        write_shard(tmp_path, "x", emt_records(2), formats=("hdf5",))
    cat.update_section("references", {"pbe": {"H": -1.0}})
    assert Catalog(tmp_path).sections == {"references": {"pbe": {"H": -1.0}}}
    assert sidecar_path(tmp_path, "descriptors", "old-names", ".npy").parent.is_dir()
    from omni_data.store import Store

    assert Store(tmp_path)[1].id == "emt:0-1"


def test_leftovers_of_dead_writers_are_cleaned_by_the_next_write(tmp_path):
    import os
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    write_shard(tmp_path, "a", emt_records(2, seed=1))
    dead = [
        tmp_path / "shards" / f".b.lmdb.tmp-{proc.pid}",
        tmp_path / f".catalog.json.tmp-{proc.pid}",
        tmp_path / "shards" / f".c.parquet.tmp-{os.getpid()}",
    ]
    young = tmp_path / "shards" / f".d.lmdb.tmp-{proc.pid}"
    for path in dead + [young]:
        path.write_bytes(b"x")
    for path in dead:
        os.utime(path, (0, 0))  # older than the grace period
    write_shard(tmp_path, "b", emt_records(2, seed=2))
    # this process's own temp file and a recent one (perhaps a writer on another node) stay
    assert [p.exists() for p in dead] == [False, False, True] and young.exists()


def test_empty_shard_and_unserialisable_metadata(tmp_path):
    from omni_data.schema import Rejected
    from omni_data.store import Store, verify_store

    write_shard(tmp_path, "a", emt_records(2, seed=1))
    write_shard(tmp_path, "b", [], rejected=[Rejected("f", 0, "parse:x")])  # a partition that was all bad
    write_shard(tmp_path, "c", emt_records(2, seed=2))
    store = Store(tmp_path)
    assert len(store) == 4 and store[2].id == "emt:2-0" and store.locate(2) == ("c", 0)
    assert len(Store(tmp_path).table(["id"])) == 4
    assert verify_store(tmp_path).ok
    bad = emt_records(1)
    bad[0].metadata = {"x": np.float32(1.0)}
    with pytest.raises(ValueError, match="record 'emt:0-0': metadata"):
        write_shard(tmp_path, "d", bad)


# --- a full disk (issue 17, item 9a): the error says ENOSPC and names the shard file


@pytest.fixture(scope="module")
def two_hundred():
    return emt_records(200, seed=1)


@pytest.mark.parametrize("fmt", ["lmdb"])
@pytest.mark.parametrize("leave", [0, 8192, 40960], ids=["0B", "8KiB", "40KiB"])
def test_full_disk_says_no_space_and_names_the_shard(tmp_path, fmt, leave, two_hundred):
    """On a real full tmpfs: LMDB's short write (which it reports as EIO, as with 40 KiB left) and
    Arrow's ENOSPC both come out as ``[Errno 28] STORE/shards/NAME.EXT: No space left on device``,
    with no temp file left."""
    import errno

    from tests.store.diskfull import fill, small_filesystem

    records = two_hundred
    with small_filesystem(tmp_path / "fs") as fs:
        store = fs / "st"
        write_shard(store, "s0", records[:5], formats=(fmt,))
        fill(fs, leave)
        with pytest.raises(OSError) as info:
            write_shard(store, "s1", records, formats=(fmt,))
        assert info.value.errno == errno.ENOSPC
        assert str(info.value) == f"[Errno 28] {store / 'shards' / ('s1.' + fmt)}: No space left on device"
        assert sorted(p.name for p in (store / "shards").iterdir()) == ["s0.lmdb", "s0.parquet"]
        assert [s["name"] for s in Catalog(store).shards] == ["s0"]
        assert not [p for p in store.iterdir() if ".tmp-" in p.name]


def test_full_disk_while_writing_the_quarantine_leaves_no_temp_file(tmp_path):
    from omni_data.schema import Rejected
    from tests.store.diskfull import fill, small_filesystem

    records = emt_records(3, seed=1)
    rejected = [Rejected("x.extxyz", i, "nonfinite:forces " + "x" * 2000, "emt", f"x:{i}") for i in range(400)]
    with small_filesystem(tmp_path / "fs") as fs:
        store = fs / "st"
        write_shard(store, "s0", records[:1])
        probe = write_shard_files(store, "probe", records[1:])
        for path in (store / "shards").glob("probe.*"):
            path.unlink()
        # room for the shard, not for its quarantine
        fill(fs, sum(meta["bytes"] for meta in probe.files.values()) + 2 * 8192)
        with pytest.raises(OSError, match=r"quarantine/s1\.parquet: No space left on device"):
            write_shard(store, "s1", records[1:], rejected=rejected)
        assert list((store / "quarantine").iterdir()) == []
        assert sorted(p.name for p in (store / "shards").iterdir()) == ["s0.lmdb", "s0.parquet"]


def test_lmdb_short_write_is_enospc_only_when_the_disk_is_full(tmp_path, monkeypatch):
    """LMDB reports a short write as EIO: ENOSPC when the filesystem has less room than the file
    still needed, the real EIO (naming the file) when there is room."""
    import errno

    import lmdb

    import omni_data.store.lmdb_write as lmdb_mod

    def short_write(path, *args):
        raise lmdb.Error("mdb_txn_commit: Input/output error")

    monkeypatch.setattr(lmdb_mod, "_write_lmdb", short_write)
    records = emt_records(4, seed=1)
    monkeypatch.setattr(lmdb_mod, "_free_bytes", lambda folder: 12288)
    with pytest.raises(OSError) as info:
        write_shard(tmp_path, "s1", records, formats=("lmdb",))
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == f"[Errno 28] {tmp_path / 'shards' / 's1.lmdb'}: No space left on device"
    monkeypatch.setattr(lmdb_mod, "_free_bytes", lambda folder: 50 << 30)
    with pytest.raises(OSError) as info:
        write_shard(tmp_path, "s1", records, formats=("lmdb",))
    assert info.value.errno == errno.EIO
    assert str(info.value) == (
        f"[Errno 5] {tmp_path / 'shards' / 's1.lmdb'}: Input/output error (mdb_txn_commit: Input/output error)"
    )
    assert list((tmp_path / "shards").iterdir()) == []


def test_lmdb_disk_error_and_map_full_are_named(tmp_path):
    import errno

    import lmdb

    from omni_data.store.lmdb_write import write_error

    path = tmp_path / "x.lmdb"
    disk = write_error(lmdb.DiskError(f"{path}: No space left on device"), path, 10)
    assert disk.errno == errno.ENOSPC and str(disk) == f"[Errno 28] {path}: No space left on device"
    full = write_error(lmdb.MapFullError("mdb_put: MDB_MAP_FULL: Environment mapsize limit reached"), path, 10)
    assert full.errno is None and str(full).startswith(f"{path}: LMDB map size too small")
