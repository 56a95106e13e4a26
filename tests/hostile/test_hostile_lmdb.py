"""Hostile LMDB sources (issue 17, items 3 and 4).

Truncated files (a partial download of an OC22/ODAC23 ``.lmdb`` or a fairchem ``.aselmdb``) used to
kill the process with SIGBUS when lmdb touched a page past the end of the file; they run here in a
subprocess, so a signal shows as a negative return code instead of taking pytest down with it.
One refused or unreadable pickled value used to fail its whole partition; now that record alone
is quarantined and ``records read = written + quarantined`` holds.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import lmdb
import pyarrow.parquet as pq
import pytest

from omni_data.store import Store

REPO = Path(__file__).resolve().parents[2]
SAMPLES = [  # (reader, file under shared data, records in it)
    ("pyg_lmdb", "lmdb/matsciml_lips_devset_200.lmdb", 200),
    ("pyg_lmdb", "lmdb/matsciml_alexandria_devset_98.lmdb", 98),
    ("aselmdb", "aselmdb/chemreporter_omol25_reactivity_samples.aselmdb", 60),
]
READ_SCRIPT = """
import json, sys
from pathlib import Path
from omni_data.readers import ReaderError, ReadOptions, get_reader
from omni_data.schema import Record
reader = get_reader(sys.argv[1])
for path in sys.argv[2:]:
    try:
        items = [i for p in reader.partitions(Path(path), 25) for i in reader.read(p, ReadOptions(dataset="x", task="t"))]
        out = {"records": sum(isinstance(i, Record) for i in items), "rejected": sum(not isinstance(i, Record) for i in items)}
    except ReaderError as exc:
        out = {"error": str(exc)}
    print(json.dumps(out), flush=True)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _page_size(path: Path) -> int:
    """The page size as lmdb itself reports it (independent of Omni's meta-page parser)."""
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    try:
        return int(env.stat()["psize"])
    finally:
        env.close()


def _truncated_copy(src: Path, dest: Path, size: int) -> Path:
    shutil.copyfile(src, dest)
    os.truncate(dest, size)
    return dest


@pytest.mark.parametrize("reader, name, n_records", SAMPLES)
def test_truncated_lmdb_is_refused_without_a_signal(
    tmp_path: Path, shared_data: Path, reader: str, name: str, n_records: int
) -> None:
    src = shared_data / name
    full = src.stat().st_size  # these samples end exactly at their last page: (last_pg + 1) * page size
    page = _page_size(src)
    one_page = _truncated_copy(src, tmp_path / f"one_page{src.suffix}", full - page)
    half = _truncated_copy(src, tmp_path / f"half{src.suffix}", full // 2)
    proc = subprocess.run(
        [sys.executable, "-c", READ_SCRIPT, reader, str(src), str(one_page), str(half)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])  # < 0 would be a signal (SIGBUS)
    whole, cut_one, cut_half = (json.loads(line) for line in proc.stdout.splitlines())
    assert whole == {"records": n_records, "rejected": 0}
    for path, result in ((one_page, cut_one), (half, cut_half)):
        message = result["error"]
        assert str(path) in message and "truncated LMDB file" in message
        assert f"has {path.stat().st_size} bytes" in message and f"needs {full} bytes" in message


def test_truncated_directory_environment_names_its_data_file(tmp_path: Path) -> None:
    import numpy as np

    env_dir = tmp_path / "oc_dir.lmdb"  # fairchem also reads LMDB directories (data.mdb + lock.mdb)
    rng = np.random.default_rng(0)
    with lmdb.open(str(env_dir), map_size=1 << 26) as env, env.begin(write=True) as txn:
        for i in range(150):
            value = {"pos": rng.uniform(0, 9, (60, 3)), "atomic_numbers": np.full(60, 29), "energy": -1.0 * i}
            txn.put(str(i).encode("ascii"), pickle.dumps(value))
    data = env_dir / "data.mdb"
    full = data.stat().st_size
    proc = subprocess.run(
        [sys.executable, "-c", READ_SCRIPT, "pyg_lmdb", str(env_dir)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"records": 150, "rejected": 0}, proc.stderr[-2000:]
    os.truncate(data, full // 2)
    proc = subprocess.run(
        [sys.executable, "-c", READ_SCRIPT, "pyg_lmdb", str(env_dir)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    message = json.loads(proc.stdout)["error"]
    assert message.startswith(f"{data}: truncated LMDB file") and f"has {full // 2} bytes" in message, message


def test_damaged_page_is_a_reader_error_naming_the_file(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "lmdb" / "matsciml_alexandria_devset_98.lmdb"
    page = _page_size(src)
    raw = bytearray(src.read_bytes())
    leaves = [
        i for i in range(2, len(raw) // page) if int.from_bytes(raw[i * page + 10 : i * page + 12], "little") == 0x02
    ]  # mp_flags == P_LEAF
    assert leaves
    for i in leaves:  # every leaf page (live or free) now claims to be an overflow page
        raw[i * page + 10 : i * page + 12] = (0x04).to_bytes(2, "little")
    bad = tmp_path / "flipped.lmdb"
    bad.write_bytes(bytes(raw))
    proc = subprocess.run(
        [sys.executable, "-c", READ_SCRIPT, "pyg_lmdb", str(bad)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    message = json.loads(proc.stdout)["error"]
    assert message.startswith(f"{bad}: damaged LMDB file") and "MDB_CORRUPTED" in message, message


def _ingest_cli(source: Path, store: Path, reader: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "omni_data.cli.main",
            "ingest",
            str(source),
            "--out",
            str(store),
            "--format",
            reader,
            "--dataset",
            "hostile",
            "--task",
            "hostile",
            "--no-cluster",
            "--no-progress",
            "--shard-size",
            "64",
        ],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_ingest_fails_only_the_truncated_file(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "lmdb" / "matsciml_lips_devset_200.lmdb"
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copyfile(src, folder / "a_whole.lmdb")
    cut = _truncated_copy(src, folder / "b_partial.lmdb", src.stat().st_size // 2)
    proc = _ingest_cli(folder, tmp_path / "store", "pyg_lmdb")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, (proc.returncode, out[-3000:])
    assert "Traceback" not in out
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and str(cut) in failed[0] and "truncated LMDB file" in failed[0], failed
    assert f"has {cut.stat().st_size} bytes" in failed[0] and f"needs {src.stat().st_size} bytes" in failed[0]
    assert "records read 200 = written 200 + quarantined 0" in proc.stdout
    assert len(Store(tmp_path / "store")) == 200  # the whole file next to it is stored in full


# --------------------------------------------------------------------------- item 4: one bad value
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what an attacker would put in an LMDB value
        return (os.system, (f"touch {self.marker}",))


def _copy_with(src: Path, dest: Path, replace: dict[bytes, bytes]) -> int:
    """Copy every key/value of ``src`` into a new single-file LMDB, replacing some values."""
    n = 0
    with (
        lmdb.open(str(src), subdir=False, readonly=True, lock=False) as env_in,
        lmdb.open(str(dest), subdir=False, map_size=1 << 28) as env_out,
    ):
        with env_in.begin() as rtxn, env_out.begin(write=True) as wtxn:
            for key, value in rtxn.cursor():
                wtxn.put(key, replace.get(key, value))
                n += key != b"length"
    return n


def test_refused_and_garbage_values_are_quarantined_the_rest_stored(tmp_path: Path, shared_data: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"pos": _Evil(marker), "atomic_numbers": [1]})
    garbage = b"\x80\x04\x95garbage that is no pickle stream \xff\x00"
    path = tmp_path / "src" / "lips_hostile.lmdb"
    path.parent.mkdir()
    n = _copy_with(shared_data / "lmdb" / "matsciml_lips_devset_200.lmdb", path, {b"17": evil, b"42": garbage})
    assert n == 200
    proc = _ingest_cli(path, tmp_path / "store", "pyg_lmdb")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not marker.exists()
    assert "records read 200 = written 198 + quarantined 2 (parse: 1, unsafe_pickle: 1)" in proc.stdout
    ids = {rec.id for rec in Store(tmp_path / "store")}
    expected = {f"hostile:lips_hostile.lmdb/{i}" for i in range(200) if i not in (17, 42)}
    assert ids == expected
    rows = [
        row
        for f in sorted((tmp_path / "store" / "quarantine").glob("*.parquet"))
        for row in pq.read_table(f).to_pylist()
    ]
    reasons = {row["source_index"]: row["reason"] for row in rows}
    assert sorted(reasons) == [17, 42]
    assert reasons[17].startswith("unsafe_pickle:17 ") and "system" in reasons[17], reasons
    assert reasons[42].startswith("parse:42 ") and "cannot unpickle" in reasons[42], reasons
