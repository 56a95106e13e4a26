"""Ingest rate: Omni (extxyz reader -> Arrow+LMDB shards) with 1 and 2 Dask workers vs ASE's path.

ASE's path is ``ase.io.read(path, ":")`` then ``ase.db`` (sqlite) writes of every frame in one
transaction -- the usual way to turn an extxyz into a database. All runs use the same generated
file in this process; cluster start-up is timed separately and excluded from the rates.

    python benchmarks/ingest.py                        # 100,000 structures (a few minutes)
    python benchmarks/ingest.py --frames 20000 --ase-frames 5000   # quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def generate_extxyz(path: Path, frames: int, seed: int = 0) -> None:
    """``frames`` periodic structures of 2-12 atoms with energy, stress and forces, extxyz layout."""
    rng = np.random.default_rng(seed)
    symbols = np.array(["H", "C", "N", "O", "Si", "Cu", "Fe", "Al"])
    line = "%s %.8f %.8f %.8f %.8f %.8f %.8f"
    with open(path, "w", encoding="ascii") as fh:
        for i in range(frames):
            n = int(rng.integers(2, 13))
            a = rng.uniform(6, 9)
            pos = rng.uniform(0, a, (n, 3))
            forces = rng.normal(0, 0.5, (n, 3))
            stress = rng.normal(0, 0.01, 6)
            s = stress
            fh.write(f"{n}\n")
            fh.write(
                f'Lattice="{a:.6f} 0.0 0.0 0.0 {a:.6f} 0.0 0.0 0.0 {a:.6f}" '
                f"Properties=species:S:1:pos:R:3:forces:R:3 energy={rng.normal(-4 * n, 1):.8f} "
                f'stress="{s[0]:.8f} {s[5]:.8f} {s[4]:.8f} {s[5]:.8f} {s[1]:.8f} {s[3]:.8f} {s[4]:.8f} {s[3]:.8f} {s[2]:.8f}" '
                f'config_id={i} pbc="T T T"\n'
            )
            el = symbols[rng.integers(0, len(symbols), n)]
            fh.write("\n".join(line % (el[k], *pos[k], *forces[k]) for k in range(n)))
            fh.write("\n")


def ase_path(src: Path, db_path: Path, limit: int | None) -> tuple[int, float]:
    """Frames and seconds for ase.io.read(':') + ase.db sqlite write (one transaction)."""
    import ase.db
    from ase.io import read

    t0 = time.perf_counter()
    frames = read(str(src), ":" if limit is None else f":{limit}")
    db = ase.db.connect(str(db_path), append=False)
    with db:
        for atoms in frames:
            db.write(atoms)
    return len(frames), time.perf_counter() - t0


def omni_run(src: Path, store: Path, workers: int, shard_size: int) -> tuple[int, float, float]:
    """Records written, ingest seconds and cluster start-up seconds (``workers=0``: in-process)."""
    from omni_data.pipeline.cluster import ClusterConfig, dask_client
    from omni_data.pipeline.ingest import IngestSpec, ingest
    from omni_data.readers import ReadOptions

    spec = IngestSpec(
        store=store,
        reader="extxyz",
        source=src,
        options=ReadOptions(dataset="bench", task="pbe"),
        shard_size=shard_size,
        command=["benchmarks/ingest.py"],
    )
    t0 = time.perf_counter()
    config = ClusterConfig(mode="sync") if workers == 0 else ClusterConfig(mode="local", workers=workers)
    with dask_client(config) as client:
        if client is not None:
            client.wait_for_workers(workers)
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        summary = ingest(spec, client=client, progress=False)
        seconds = time.perf_counter() - t1
    if not summary.ok:
        raise RuntimeError("\n".join(summary.lines()))
    return summary.written, seconds, startup


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--ase-frames", type=int, default=None, help="run ASE's path on the first N frames only")
    p.add_argument("--shard-size", type=int, default=10_000)
    p.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp folder)")
    args = p.parse_args(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="omni-bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "bench.extxyz"
    t0 = time.perf_counter()
    generate_extxyz(src, args.frames)
    print(
        f"generated {args.frames:,} frames ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    rates: dict[str, float] = {}
    for label, workers in (("omni in-process", 0), ("omni 1 worker", 1), ("omni 2 workers", 2)):
        n, sec, startup = omni_run(src, work / f"store-{workers}", workers, args.shard_size)
        rates[label] = n / sec
        print(
            f"{label:16s} {n:,} records in {sec:6.1f} s = {rates[label]:9,.0f} structures/s"
            f"  (cluster start {startup:.1f} s, not counted)"
        )
    n, sec = ase_path(src, work / "ase.db", args.ase_frames)
    rates["ase"] = n / sec
    print(f"{'ase read+db':16s} {n:,} records in {sec:6.1f} s = {rates['ase']:9,.0f} structures/s")
    print(f"ratio omni 1 worker / ASE (per core): {rates['omni 1 worker'] / rates['ase']:.1f}x  (target >= 5x)")
    print(f"ratio omni in-process / ASE: {rates['omni in-process'] / rates['ase']:.1f}x")
    print(f"ratio omni 2 workers / 1 worker: {rates['omni 2 workers'] / rates['omni 1 worker']:.2f}x  (target >= 1.7x)")
    print(f"load average after: {os.getloadavg()[0]:.1f}; work folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
