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
    columns = root / "shards" / "s-a.parquet"
    data = bytearray(columns.read_bytes())
    data[len(data) // 2] ^= 0xFF
    columns.write_bytes(bytes(data))
    (root / "shards" / "s-b.lmdb").unlink()
    report = verify_store(root)
    assert not report.ok
    assert any("'s-a' columns file shards/s-a.parquet: sha256" in p for p in report.problems)
    assert any("'s-b' lmdb file shards/s-b.lmdb: missing" in p for p in report.problems)
    assert len(report.problems) == 2


def test_orphan_files_are_notes_not_problems(tmp_path):
    root = _store(tmp_path)
    shutil.copy(root / "shards" / "s-a.parquet", root / "shards" / "leftover.parquet")
    report = verify_store(root)
    assert report.ok and report.notes == [
        "shards/leftover.parquet: not in the catalog (leftover of an interrupted write)"
    ]


def test_a_damaged_value_is_named_with_its_row(tmp_path):
    """A value whose bytes changed after the catalog's sha256 was taken (so only the per-record
    checksum sees it) is a problem naming the shard, file and row."""
    import json

    from omni_data.store.codec import encode_record
    from omni_data.store.lmdb_write import write_lmdb
    from omni_data.store.writer import sha256_file

    root = _store(tmp_path)
    lmdb_file = root / "shards" / "s-b.lmdb"
    records = emt_records(4, seed=2)
    strings: dict[str, int] = {}
    values = [encode_record(r, row, strings) for row, r in enumerate(records)]
    values[2] = values[2][:-1] + bytes([values[2][-1] ^ 1])
    lmdb_file.unlink()
    write_lmdb(lmdb_file, "s-b", values, list(strings))
    catalog = json.loads((root / "catalog.json").read_text())
    entry = next(s for s in catalog["shards"] if s["name"] == "s-b")
    entry["files"]["lmdb"].update(sha256=sha256_file(lmdb_file), bytes=lmdb_file.stat().st_size)
    entry["files"]["lmdb"].pop("head_crc32")
    from omni_data.store.catalog import write_catalog

    write_catalog(root, catalog)
    report = verify_store(root)
    assert report.problems == [
        "shard 's-b' lmdb file shards/s-b.lmdb: cannot be read (ValueError: row 2: checksum mismatch (damaged value))"
    ]


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftover_temporary_files_are_listed(tmp_path):
    """A killed or failed writer's temp files (issue 17, item 9c) are each named with their size
    and whether their writer still runs; readers never see them, so the store stays valid."""
    import os

    root = _store(tmp_path)
    dead, alive = _dead_pid(), os.getpid()
    (root / f".catalog.json.tmp-{dead}").write_bytes(b"{" * 10)
    (root / "shards" / f".s-c.lmdb.tmp-{dead}").write_bytes(b"\0" * 4096)
    (root / "quarantine").mkdir()
    (root / "quarantine" / f".s-c.parquet.tmp-{alive}").write_bytes(b"PAR1")
    (root / "index" / f".build-{dead}").mkdir(parents=True)
    (root / "index" / f".build-{dead}" / "run-0-0.lmdb").write_bytes(b"\0" * 100)
    (root / "sidecars" / "soap").mkdir(parents=True)
    (root / "sidecars" / "soap" / f".s-a.{dead}.tmp.npz").write_bytes(b"x")
    report = verify_store(root)
    assert report.ok
    assert report.temporaries == [
        f".catalog.json.tmp-{dead}",
        f"index/.build-{dead}",
        f"quarantine/.s-c.parquet.tmp-{alive}",
        f"shards/.s-c.lmdb.tmp-{dead}",
        f"sidecars/soap/.s-a.{dead}.tmp.npz",
    ]
    assert report.notes == [
        f".catalog.json.tmp-{dead}: temporary file of an interrupted or failed write, 10 bytes "
        f"(pid {dead} is not running: safe to delete)",
        f"index/.build-{dead}: temporary file of an interrupted or failed write, 100 bytes "
        f"(pid {dead} is not running: safe to delete)",
        f"quarantine/.s-c.parquet.tmp-{alive}: temporary file of an interrupted or failed write, 4 bytes "
        f"(its writer (pid {alive}) is still running)",
        f"shards/.s-c.lmdb.tmp-{dead}: temporary file of an interrupted or failed write, 4,096 bytes "
        f"(pid {dead} is not running: safe to delete)",
        f"sidecars/soap/.s-a.{dead}.tmp.npz: temporary file of an interrupted or failed write, 1 bytes "
        f"(pid {dead} is not running: safe to delete)",
    ]


def test_verify_cli_prints_leftover_temporaries(tmp_path, capsys):
    from omni_data.cli.main import main

    root = _store(tmp_path)
    dead = _dead_pid()
    (root / f".catalog.json.tmp-{dead}").write_bytes(b"{}")
    assert main(["verify", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"note .catalog.json.tmp-{dead}: temporary file of an interrupted or failed write, 2 bytes" in out


def test_verify_quiet_still_names_leftover_temporaries(tmp_path, capsys):
    from omni_data.cli.main import main

    root = _store(tmp_path)
    dead = _dead_pid()
    (root / f".catalog.json.tmp-{dead}").write_bytes(b"{}")
    assert main(["verify", "--quiet", str(root)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"leftover temporary file .catalog.json.tmp-{dead}" in captured.err
