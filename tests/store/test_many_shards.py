"""Bounded resources (issue 23, item 4): a store of 2,000 shards is read, exported, indexed,
verified and ingested into under ``RLIMIT_NOFILE = 256`` (``ulimit -n 256``), in a subprocess.

At most ``Store.max_open`` LMDB shards are open at once (least recently used closed first);
Parquet columns, quarantine files and shard ids are read whole and closed; the id index build
merges at most ``FAN_IN`` runs at once. The full-scale figure (24,200 shards) is the same code
path with more shards: ``python tests/store/test_many_shards.py 24200`` builds and checks one.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SHARDS = 2000

CHECK = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    import numpy as np
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    from omni_data.export import export_extxyz
    from omni_data.pipeline.ingest import IngestSpec, ingest
    from omni_data.readers import ReadOptions
    from omni_data.store import Store, build_id_index, verify_store
    from omni_data.store.lmdb import open_environments

    root, work, shards = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    store = Store(root, max_open=64)
    n = len(store)
    assert n == 2 * shards, n
    for i in range(n):                                   # every record, shard after shard
        assert store[i].id == f"many:{i}"
    rng = np.random.default_rng(0)
    idx = rng.integers(0, n, 3000)                       # random reads: the LRU keeps closing shards
    assert [r.id for r in store.get_many(idx)] == [f"many:{i}" for i in idx.tolist()]
    assert store.open_shards <= 64 and open_environments() <= 64, (store.open_shards, open_environments())
    assert store.table(["id"]).num_rows == n
    report = build_id_index(root, rebuild=True)
    assert report.ids == n, report
    store.refresh()
    assert store.get("many:1234").id == "many:1234"
    assert export_extxyz(store, work / "all.extxyz") == n
    assert verify_store(root).ok
    src = work / "new.extxyz"
    from omni_data.store.testing import emt_records, write_extxyz
    write_extxyz(emt_records(4, seed=5), src)
    summary = ingest(IngestSpec(store=root, reader="extxyz", source=src,
                                options=ReadOptions(dataset="emt", task="pbe"), shard_size=10), progress=False)
    assert summary.ok, summary.errors
    store.refresh()
    assert len(store) == n + 4 and store.get(store[n].id).id == store[n].id
    print("ok", resource.getrlimit(resource.RLIMIT_NOFILE))
""")


def build(root: Path, shards: int) -> None:
    """``shards`` shards of 2 small records each, registered in one catalog update."""
    from omni_data.schema import Record
    from omni_data.store import register_shard, write_shard_files

    rng = np.random.default_rng(0)
    infos = []
    for k in range(shards):
        recs = [
            Record(
                numbers=np.array([8, 1, 1]),
                positions=rng.random((3, 3)),
                id=f"many:{2 * k + j}",
                dataset="many",
                task="pbe",
                energy=float(rng.normal()),
                forces=rng.normal(size=(3, 3)),
            )
            for j in range(2)
        ]
        infos.append(write_shard_files(root, f"many-{k:06d}", recs))
    register_shard(root, *infos)


@pytest.mark.slow
def test_two_thousand_shards_under_ulimit_256(tmp_path):
    build(tmp_path / "store", SHARDS)
    (tmp_path / "work").mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path / "store"), str(tmp_path / "work"), str(SHARDS)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith("ok (256, 256)")


if __name__ == "__main__":  # python tests/store/test_many_shards.py [SHARDS]
    import tempfile
    import time

    shards = int(sys.argv[1]) if len(sys.argv) > 1 else SHARDS
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build(Path(tmp) / "store", shards)
        print(f"built {shards} shards in {time.perf_counter() - t0:.0f} s")
        (Path(tmp) / "work").mkdir()
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHECK, str(Path(tmp) / "store"), str(Path(tmp) / "work"), str(shards)]
        )
        print(f"checked in {time.perf_counter() - t0:.0f} s, exit {out.returncode}")
