"""Benchmark: store reads (plain Python), the cost of the damage checks, and the loader path,
each against ASE's own ``.aselmdb`` read of the same records, in this process.

The same generated records (periodic, forces, stress; ``--atoms`` atoms per record on average)
are written to an Omni store and, through ``omni_data.export.export_aselmdb``, to a ``.aselmdb``
(ase-db-backends ``LMDBDatabase``, what fairchem's ``AseDBDataset`` reads). Rates are records
per second of this process's CPU time (``time.process_time``: time spent preempted on a busy
machine is not counted), best of ``--rounds`` passes, passes of all paths interleaved.

Paths (like for like, each makes what its name says and drops it):

* ``omni store[i] -> Record``          random indices, every field decoded and checked;
* ``omni get_many(256) -> Records``    the same indices in DataLoader batches;
* ``omni store[i] unchecked``          the same decode without crc32/length/row checks (what
                                       the checks cost: the difference);
* ``omni to_atoms(i) -> Atoms``        vs ``aselmdb fairchem get_atoms -> Atoms``: the four steps
                                       of fairchem ``AseDBDataset.get_atoms`` (``_get_row``,
                                       ``toatoms``, ``info.update(row.data)``) on
                                       ``LMDBDatabase(readonly=True)`` (fairchem-core itself is not
                                       installed here) and ``aselmdb db.get(id=).toatoms()``;
* loader: ``omni store -> graph (vesin) -> collate(32)`` vs ``aselmdb get_atoms -> graph (vesin)
  -> collate(32)``: structures/s per core of the training input path (omni_model.data).

    python benchmarks/read.py                         # 20,000 records of ~20 atoms (~3 min)
    python benchmarks/read.py --records 200000 --reads 50000
    # + store format 1's pure-Python reader on the same records, in a subprocess right after
    #   (a yardstick for a busy machine: it read 233k records/s on a quiet one, docs/benchmarks/store.md)
    git archive 1080cc2 omni_data | tar -x -C /tmp/omni_v1
    python benchmarks/read.py --format1-tree /tmp/omni_v1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def make_records(n: int, atoms: int, seed: int = 0) -> list:
    from omni_data.schema import Record

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        m = int(rng.integers(max(1, atoms // 2), atoms * 3 // 2 + 1))
        out.append(
            Record(
                numbers=rng.integers(1, 84, m),
                positions=rng.random((m, 3)) * 8.0,
                id=f"bench:{k}",
                dataset="bench",
                task="pbe",
                cell=np.eye(3) * 8.0,
                pbc=np.ones(3, bool),
                energy=float(rng.normal() * 50),
                forces=rng.normal(size=(m, 3)),
                stress=rng.normal(size=6) * 1e-3,
                source_file="bench.extxyz",
                source_index=k,
                metadata={"sid": k},
            ).normalized()
        )
    return out


def each(fn: Callable[[int], object]) -> Callable[[np.ndarray], None]:
    def run(idx: np.ndarray) -> None:
        for i in idx.tolist():
            fn(i)

    return run


def best_rates(paths: dict[str, tuple[Callable[[np.ndarray], None], np.ndarray]], rounds: int) -> dict[str, float]:
    best = {name: 0.0 for name in paths}
    for _ in range(rounds):
        for name, (run, idx) in paths.items():
            t0 = time.process_time()
            run(idx)
            best[name] = max(best[name], len(idx) / max(time.process_time() - t0, 1e-9))
    return best


def unchecked_reader(store) -> Callable[[int], object]:
    """``store[i]`` minus every check: the raw LMDB get, decompress, unpack and build."""
    import bisect

    import msgpack

    from omni_data.store import codec
    from omni_data.store.lmdb import row_key

    ends = store._ends_list
    starts = store._starts_list

    def read(i: int) -> object:
        k = bisect.bisect_right(ends, i)
        shard = store._handle(k)
        value = shard._txn().get(row_key(i - starts[k]))
        body = codec._DECOMPRESS(value[5:]) if value[4] == codec.LZ4 else value[5:]
        return codec._record(msgpack.unpackb(body), shard.strings)

    return read


def fairchem_get_atoms(db, ids: list[int]) -> Callable[[int], object]:
    """fairchem ``AseDBDataset.get_atoms(idx)`` on one db: ``_get_row``, ``toatoms``, info from data."""

    def get_atoms(i: int) -> object:
        row = db._get_row(ids[i])
        atoms = row.toatoms()
        if isinstance(row.data, dict):
            atoms.info.update(row.data)
        return atoms

    return get_atoms


FORMAT1 = """
import sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(1, sys.argv[2])
import tempfile
from pathlib import Path
import numpy as np
import omni_data
assert omni_data.__file__.startswith(sys.argv[1]), omni_data.__file__
from read import make_records
from omni_data.store import Store, write_shard
n, atoms, reads, rounds, shard = (int(x) for x in sys.argv[3:8])
with tempfile.TemporaryDirectory() as tmp:
    recs = make_records(n, atoms)
    for k in range(0, n, shard):
        write_shard(Path(tmp) / "s", f"bench-{k // shard:05d}", recs[k:k + shard], formats=("lmdb",))
    store = Store(Path(tmp) / "s")
    idx = np.random.default_rng(1).integers(0, n, reads).tolist()
    best = 0.0
    for _ in range(rounds):
        t0 = time.process_time()
        for i in idx:
            store[i]
        best = max(best, len(idx) / (time.process_time() - t0))
    print(best)
"""


def format1_rate(tree: Path, args: argparse.Namespace) -> float:
    import subprocess

    env = {**os.environ, "OMNI_PURE_PYTHON_CODEC": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            FORMAT1,
            str(tree),
            str(Path(__file__).parent),
            str(args.records),
            str(args.atoms),
            str(args.reads),
            str(args.rounds),
            str(args.shard_size),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def loader_rate(
    get: Callable[[int], object], graph_of: Callable[[object], object], idx: np.ndarray, batch: int = 32
) -> float:
    from omni_model.data.graph import collate

    t0 = time.process_time()
    for k in range(0, len(idx), batch):
        collate([graph_of(get(i)) for i in idx[k : k + batch].tolist()])
    return len(idx) / max(time.process_time() - t0, 1e-9)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--atoms", type=int, default=20, help="mean atoms per record")
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shard-size", type=int, default=10000)
    ap.add_argument(
        "--aselmdb-records",
        type=int,
        default=5000,
        help="records also written to .aselmdb (its export runs at ~150 records/s)",
    )
    ap.add_argument("--loader-reads", type=int, default=2000)
    ap.add_argument(
        "--format1-tree",
        type=Path,
        default=None,
        help="a checkout of omni_data before store v2: time its pure-Python store[i] too",
    )
    args = ap.parse_args(argv)

    from ase_db_backends.aselmdb import LMDBDatabase

    from omni_data.export import export_aselmdb
    from omni_data.store import Store, StoreView, build_id_index, write_shard

    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; load average "
        f"{tuple(round(x, 1) for x in os.getloadavg())}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        records = make_records(args.records, args.atoms)
        t0 = time.perf_counter()
        for k in range(0, len(records), args.shard_size):
            write_shard(work / "store", f"bench-{k // args.shard_size:05d}", records[k : k + args.shard_size])
        build_id_index(work / "store")
        t_write = time.perf_counter() - t0
        store = Store(work / "store")
        m = min(args.aselmdb_records, len(records))
        t0 = time.perf_counter()
        export_aselmdb(StoreView(store, np.arange(m, dtype=np.int64)), work / "bench.aselmdb")
        print(
            f"{len(records):,} records, {np.mean([r.n_atoms for r in records]):.1f} atoms each on average; "
            f"store written in {t_write:.1f} s ({len(records) / t_write:,.0f} records/s incl. the id index); "
            f"{m:,} exported to .aselmdb in {time.perf_counter() - t0:.1f} s"
        )
        del records
        db = LMDBDatabase(work / "bench.aselmdb", readonly=True)
        ids = list(db.ids)
        rng = np.random.default_rng(1)
        idx = rng.integers(0, len(store), args.reads)
        small = rng.integers(0, m, min(args.reads, 5000))  # indices both hold (same records)
        batches = [idx[k : k + 256] for k in range(0, len(idx), 256)]
        unchecked = unchecked_reader(store)

        def many(_idx: np.ndarray) -> None:
            for b in batches:
                store.get_many(b)

        paths = {
            "omni store[i] -> Record": (each(store.__getitem__), idx),
            "omni store[i] unchecked (no crc32/length/row checks)": (each(unchecked), idx),
            "omni get_many(256) -> Records": (many, idx),
            "omni to_atoms(i) -> Atoms": (each(store.to_atoms), small),
            "aselmdb fairchem get_atoms -> Atoms": (each(fairchem_get_atoms(db, ids)), small),
            "aselmdb db.get(id=).toatoms() -> Atoms": (each(lambda i: db.get(id=ids[i]).toatoms()), small),
        }
        rates = best_rates(paths, args.rounds)
        width = max(map(len, rates))
        print("\nrecords/s of CPU time, best of", args.rounds)
        for name, rate in rates.items():
            print(f"  {name:<{width}}  {rate:>12,.0f}")
        full, raw = rates["omni store[i] -> Record"], rates["omni store[i] unchecked (no crc32/length/row checks)"]
        print(
            f"\ncost of the checks: {1e6 / full - 1e6 / raw:.2f} us per record "
            f"({(raw / full - 1) * 100:.0f}% of an unchecked read)"
        )
        fair = rates["aselmdb fairchem get_atoms -> Atoms"]
        print(f"to_atoms vs fairchem get_atoms: {rates['omni to_atoms(i) -> Atoms'] / fair:.2f}x")

        from omni_model.data.dataset import record_graph
        from omni_model.data.graph import collate, graph_from_atoms, species_table

        table = species_table(list(range(1, 84)))
        li = small[: args.loader_reads]
        collate([record_graph(store[0], 5.0, table, {"pbe": 0})])  # import torch before timing
        omni_loader = ase_loader = 0.0
        for _ in range(args.rounds):
            omni_loader = max(
                omni_loader, loader_rate(store.__getitem__, lambda r: record_graph(r, 5.0, table, {"pbe": 0}), li)
            )
            ase_loader = max(
                ase_loader, loader_rate(fairchem_get_atoms(db, ids), lambda a: graph_from_atoms(a, 5.0, table), li)
            )
        print(
            f"\nloader (read -> vesin graph, cutoff 5 A -> collate 32), structures/s of CPU time:\n"
            f"  omni store      {omni_loader:>10,.0f}\n  aselmdb (fairchem get_atoms) {ase_loader:>10,.0f}\n"
            f"  ratio {omni_loader / ase_loader:.2f}x"
        )
        store.close()
        db.close()
    if args.format1_tree is not None:
        old = format1_rate(args.format1_tree, args)
        print(
            f"\nstore format 1, pure-Python store[i] on the same records, just after: {old:,.0f} records/s "
            f"(233,521 on a quiet machine, 2026-11-25); this run's store[i] / format 1's: {full / old:.2f}"
        )
    print(f"load average after: {tuple(round(x, 1) for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
