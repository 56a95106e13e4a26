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
    for fmt in ("arrow", "lmdb"):
        meta = info.files[fmt]
        assert sha256_file(tmp_path / meta["file"]) == meta["sha256"]
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["d-1.arrow", "d-1.lmdb"]


def test_failed_write_leaves_nothing_visible(tmp_path, monkeypatch):
    import omni_data.store.lmdb as lm

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(lm, "write_lmdb", boom)
    with pytest.raises(OSError, match="disk full"):
        write_shard(tmp_path, "x", emt_records(2))
    assert list((tmp_path / "shards").iterdir()) == []  # temp arrow file cleaned up too
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


def test_single_format_and_sections(tmp_path):
    write_shard(tmp_path, "only-arrow", emt_records(2), formats=("arrow",))
    cat = Catalog(tmp_path)
    assert list(cat.shard("only-arrow")["files"]) == ["arrow"]
    cat.update_section("references", {"pbe": {"H": -1.0}})
    assert Catalog(tmp_path).sections == {"references": {"pbe": {"H": -1.0}}}
    assert sidecar_path(tmp_path, "descriptors", "only-arrow", ".npy").parent.is_dir()
    from omni_data.store import Store

    assert Store(tmp_path)[1].id == "emt:0-1"  # falls back to Arrow when no LMDB file


def test_empty_shard_and_unserialisable_metadata(tmp_path):
    from omni_data.schema import Rejected
    from omni_data.store import Store, verify_store

    write_shard(tmp_path, "a", emt_records(2, seed=1))
    write_shard(tmp_path, "b", [], rejected=[Rejected("f", 0, "parse:x")])  # a partition that was all bad
    write_shard(tmp_path, "c", emt_records(2, seed=2))
    store = Store(tmp_path)
    assert len(store) == 4 and store[2].id == "emt:2-0" and store.locate(2) == ("c", 0)
    assert len(Store(tmp_path, backend="arrow").table(["id"])) == 4
    assert verify_store(tmp_path).ok
    bad = emt_records(1)
    bad[0].metadata = {"x": np.float32(1.0)}
    with pytest.raises(ValueError, match="record 'emt:0-0': metadata"):
        write_shard(tmp_path, "d", bad)
