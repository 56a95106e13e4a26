"""Benchmark: streamed reference-energy fit vs a dense in-memory least squares (the baseline).

Generates a store of small synthetic frames (2-8 atoms, 10 elements, two tasks with known
references, Arrow shards), then fits the references

* streamed (``omni_data.harmonize.references.fit_store``) with 1 and 2 Dask workers, on a
  quarter of the shards and on all of them -- peak RSS should not grow with the store;
* dense baseline: the whole design matrix in memory and one ``np.linalg.lstsq`` per task.

Each fit runs in a fresh child process so that its peak RSS (``resource.getrusage``; the
largest of the process and its Dask worker processes) is its own. Prints times, peak RSS, the
ratios streamed/dense and the largest |Δμ| between the two.

    python benchmarks/references.py                   # 200,000 frames (default, ~1-2 min)
    python benchmarks/references.py --records 1000000 # the full-size run
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ELEMENTS = np.array([1, 6, 7, 8, 13, 14, 26, 29, 47, 79])
MU = {"a": -np.linspace(1.0, 5.5, 10), "b": -np.linspace(2.0, 7.0, 10) - 0.3}


def peak_rss_mb() -> float:
    """Largest resident set of this process or any finished child (Linux: ru_maxrss in KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def generate(path: Path, records: int, shard_size: int, seed: int = 0) -> None:
    """Write ``records`` frames in Arrow-only shards (LMDB is not read by the fit)."""
    from omni_data.schema import Record
    from omni_data.store import write_shard

    rng = np.random.default_rng(seed)
    for k, start in enumerate(range(0, records, shard_size)):
        m = min(shard_size, records - start)
        task = "a" if k % 2 == 0 else "b"
        sizes = rng.integers(2, 9, m)
        recs = []
        for i, n in enumerate(sizes):
            idx = rng.integers(0, len(ELEMENTS), n)
            e = float(MU[task][idx].sum() + rng.normal(0.0, 0.05 * np.sqrt(n)))
            recs.append(
                Record(
                    numbers=ELEMENTS[idx],
                    positions=rng.random((n, 3)) * 6.0,
                    id=f"bench:{start + i}",
                    dataset="bench",
                    task=task,
                    cell=np.eye(3) * 6.0,
                    pbc=np.ones(3, bool),
                    energy=e,
                    forces=rng.normal(0.0, 0.5, (n, 3)),
                )
            )
        write_shard(path, f"shard-{k:05d}", recs, formats=("arrow",))


def child_streamed(store: str, workers: int, n_shards: int | None) -> dict:
    from omni_data.harmonize.references import fit_store
    from omni_data.store import Store

    shards = Store(store).shard_names[:n_shards] if n_shards else None
    client = cluster = None
    if workers < 0:  # a LocalCluster started (and warmed) before the clock starts, as ingest runs
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=-workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        client.run(lambda: __import__("omni_data.harmonize.references"))
    t = time.perf_counter()
    fits = fit_store(store, workers=max(workers, 1), client=client, shards=shards)
    seconds = time.perf_counter() - t
    if client is not None:
        client.close()
        cluster.close()
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "mu": {t: {str(z): v for z, v in f.mu.items()} for t, f in fits.items()},
        "frames": sum(f.n_frames for f in fits.values()),
    }


def child_dense(store: str, n_shards: int | None) -> dict:
    """Baseline: every frame's composition row in memory, one lstsq per task."""
    import pyarrow as pa

    from omni_data.harmonize.references import element_counts
    from omni_data.store import Store

    s = Store(store)
    t = time.perf_counter()
    names = s.shard_names[:n_shards] if n_shards else s.shard_names
    table = pa.concat_tables([s.table(["task", "energy", "numbers"], shard=n) for n in names])
    tasks = np.asarray(table.column("task").to_pylist())
    energy = table.column("energy").to_numpy()
    a = np.stack([element_counts(z) for z in table.column("numbers").to_numpy(zero_copy_only=False)])
    mu = {}
    for task in np.unique(tasks):
        rows = tasks == task
        cols = np.flatnonzero(a[rows].any(axis=0))
        sol, *_ = np.linalg.lstsq(a[rows][:, cols].astype(float), energy[rows], rcond=None)
        mu[str(task)] = {str(z): float(v) for z, v in zip(cols, sol)}
    return {"seconds": time.perf_counter() - t, "peak_rss_mb": peak_rss_mb(), "mu": mu, "frames": int(len(energy))}


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000, help="frames in the store (default 200000)")
    p.add_argument("--shard-size", type=int, default=20_000, help="frames per shard (default 20000)")
    p.add_argument("--store", help="use/keep this store directory (default: a temporary one)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--shards", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        result = (
            child_dense(args.child, args.shards or None)
            if args.workers == 0
            else child_streamed(args.child, args.workers, args.shards or None)
        )
        print(json.dumps(result))
        return
    tmp = None if args.store else tempfile.mkdtemp(prefix="omni-bench-refs-")
    store = Path(args.store or tmp) / "store"
    try:
        if not (store / "catalog.json").is_file():
            t = time.perf_counter()
            generate(store, args.records, args.shard_size)
            print(f"generated {args.records} frames in {time.perf_counter() - t:.1f} s")
        from omni_data.store import Store

        n_shards = len(Store(store).shard_names)
        size_mb = sum(f.stat().st_size for f in (store / "shards").iterdir()) / 2**20
        quarter = max(1, n_shards // 4)
        print(f"store: {n_shards} shards, {size_mb:.0f} MiB on disk")
        print(f"{'fit':<38} {'frames':>9} {'time (s)':>9} {'peak RSS (MiB)':>15}")
        results = {}
        for label, workers, shards in [
            ("streamed, 1 worker, 1/4", 1, quarter),
            ("streamed, 1 worker", 1, 0),
            ("streamed, 2 workers", 2, 0),
            ("streamed, started cluster, 1 worker", -1, 0),
            ("streamed, started cluster, 2 workers", -2, 0),
            ("dense baseline, 1/4", 0, quarter),
            ("dense baseline", 0, 0),
        ]:
            r = run_child(["--child", str(store), "--workers", str(workers), "--shards", str(shards)])
            results[label] = r
            print(f"{label:<38} {r['frames']:>9} {r['seconds']:>9.2f} {r['peak_rss_mb']:>15.0f}")
        s1, s2, d = (results[k] for k in ("streamed, 1 worker", "streamed, 2 workers", "dense baseline"))
        dmu = max(abs(s1["mu"][t][z] - d["mu"][t][z]) for t in d["mu"] for z in d["mu"][t])
        print(
            f"ratio streamed/dense: time {s1['seconds'] / d['seconds']:.2f}, "
            f"peak RSS {s1['peak_rss_mb'] / d['peak_rss_mb']:.2f}"
        )
        print(f"speed-up 2 workers vs 1: {s1['seconds'] / s2['seconds']:.2f}x (process pool started inside the timing)")
        c1, c2 = results["streamed, started cluster, 1 worker"], results["streamed, started cluster, 2 workers"]
        print(f"speed-up 2 workers vs 1 on a started LocalCluster: {c1['seconds'] / c2['seconds']:.2f}x")
        q1, qd = results["streamed, 1 worker, 1/4"], results["dense baseline, 1/4"]
        print(
            f"peak RSS growth 1/4 -> full store: streamed {s1['peak_rss_mb'] / q1['peak_rss_mb']:.2f}x, "
            f"dense {d['peak_rss_mb'] / qd['peak_rss_mb']:.2f}x"
        )
        print(f"max |Δμ| streamed vs dense: {dmu:.2e} eV")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
