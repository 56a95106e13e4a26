"""The catalog at full scale: a generated catalog of 24,200 shards (242M structures in shards of
10,000), as a Store and its DataLoader workers see it.

Prints, in one process: the time to open a Store, the Python memory of the full catalog
(``Catalog(path)``) beside the reader's view a Store holds (``Catalog(path, reader=True)``),
both measured with tracemalloc, the size of a pickled Store (what a spawned DataLoader worker
receives), the private memory a forked worker gains from its first full garbage collection,
and the time of one catalog rewrite.

    python benchmarks/catalog.py                  # 24,200 shards, ~30 s
    python benchmarks/catalog.py --shards 2000
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

from ase.data import chemical_symbols

from omni_data.store import Store
from omni_data.store.catalog import Catalog, dump_catalog, empty_catalog, summarize, update_catalog


def make_catalog(root: Path, shards: int, seed: int = 0) -> None:
    """A catalog of ``shards`` entries shaped like an ingest's (40-89 elements per shard)."""
    rng = random.Random(seed)
    entries = []
    for k in range(shards):
        name = f"omat-{k:06d}"
        elements = sorted(rng.sample(chemical_symbols[1:95], rng.randint(40, 89)))
        entries.append(
            {
                "name": name,
                "records": 10_000,
                "atoms": 200_000,
                "files": {
                    fmt: {
                        "file": f"shards/{name}.{fmt}",
                        "sha256": f"{rng.getrandbits(256):064x}",
                        "bytes": rng.randint(10**7, 10**8),
                    }
                    for fmt in ("arrow", "lmdb")
                },
                "by_task": {"omat": 10_000},
                "by_dataset": {"omat": 10_000},
                "by_element": {e: rng.randint(300, 9000) for e in elements},
                "quarantined": 0,
                "quarantined_by_reason": {},
                "quarantine": None,
                "partition": f"omat/part-{k}",
                "partition_hash": f"{rng.getrandbits(160):040x}",
            }
        )
    data = empty_catalog()
    data["shards"], data["counts"] = entries, summarize(entries)
    root.mkdir(parents=True, exist_ok=True)
    (root / "catalog.json").write_text(dump_catalog(data), encoding="utf-8")


def held(load) -> tuple[float, float]:
    """(MiB kept, MiB at peak) of Python allocations while ``load()`` runs and its result lives."""
    gc.collect()
    tracemalloc.start()
    obj = load()
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del obj
    return kept / 2**20, peak / 2**20


def private_dirty_mib() -> float:
    text = open("/proc/self/smaps_rollup").read()
    return int(text.split("Private_Dirty:")[1].split()[0]) / 1024


def forked_worker_growth(store: Store) -> str:
    """Private memory a forked child gains from one full collection (a DataLoader worker's)."""
    if not os.path.exists("/proc/self/smaps_rollup"):
        return "n/a (no /proc)"
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        before = private_dirty_mib()
        gc.collect()
        os.write(wr, f"{private_dirty_mib() - before:.0f}".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    return os.read(rd, 64).decode() + " MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=24_200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="omni-bench-catalog-") as tmp:
        root = Path(tmp)
        make_catalog(root, args.shards)
        size = (root / "catalog.json").stat().st_size
        print(
            f"catalog of {args.shards:,} shards: {size / 2**20:.1f} MiB of JSON (load average {os.getloadavg()[0]:.2f})"
        )
        full_kept, full_peak = held(lambda: Catalog(root))
        slim_kept, slim_peak = held(lambda: Catalog(root, reader=True))
        print(f"  full catalog, Catalog(path):               {full_kept:7.1f} MiB kept, {full_peak:7.1f} MiB peak")
        print(
            f"  reader's view, Catalog(path, reader=True): {slim_kept:7.1f} MiB kept, {slim_peak:7.1f} MiB peak"
            f"   ({full_kept / slim_kept:.1f}x less kept)"
        )
        t0 = time.perf_counter()
        store = Store(root)
        print(f"  Store(path): {time.perf_counter() - t0:.2f} s, {len(store):,} records")
        full_pickle = len(pickle.dumps({"path": str(root), "backend": "lmdb", "catalog": Catalog(root).data}))
        store_pickle = len(pickle.dumps(store))
        print(
            f"  pickled Store: {store_pickle / 2**20:.1f} MiB (with the full catalog it would be "
            f"{full_pickle / 2**20:.1f} MiB, {full_pickle / store_pickle:.1f}x)"
        )
        t0 = time.perf_counter()
        pickle.loads(pickle.dumps(store))
        print(f"  pickle + unpickle a Store (a spawned worker's start): {time.perf_counter() - t0:.2f} s")
        print(f"  forked worker, private memory gained by gc.collect(): {forked_worker_growth(store)}")
        t0 = time.perf_counter()
        update_catalog(root, lambda data: None)
        print(f"  one catalog rewrite (read, recount, write, fsync): {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
