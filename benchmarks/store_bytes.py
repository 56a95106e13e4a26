"""Benchmark: bytes on disk of an Omni store vs the ``.aselmdb`` of the same records.

Baseline = ``omni_data.export.export_aselmdb`` of the very records in the store (ase-db-backends'
``LMDBDatabase``, what fairchem reads: zlib-compressed JSON rows). Omni = the shard files
(``shards/*.lmdb`` + ``shards/*.parquet``); ``catalog.json`` and the id index are printed apart
(the catalog is per store, not per record; the id index is optional). Both sizes are ``st_size``.

    python benchmarks/store_bytes.py                          # real: the 295 oxide rows (asedb sample)
    python benchmarks/store_bytes.py --real /work/shared/data/aselmdb   # + the 180 OMol25 rows
    python benchmarks/store_bytes.py --generated 200000       # + a generated store of 200k records

Generated records: 4-64 atoms (uniform), periodic, forces and stress, energy; positions and
forces as full float64 (no decimal rounding), the hardest case for both formats.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path("/work/shared/data")


def _sizes(store: Path) -> dict[str, int]:
    out = {"lmdb": 0, "parquet": 0}
    for path in (store / "shards").iterdir():
        if path.suffix == ".lmdb":
            out["lmdb"] += path.stat().st_size
        elif path.suffix == ".parquet":
            out["parquet"] += path.stat().st_size
    out["catalog"] = (store / "catalog.json").stat().st_size
    out["index"] = sum(p.stat().st_size for p in (store / "index").glob("*.lmdb")) if (store / "index").is_dir() else 0
    return out


def compare(name: str, records: list, work: Path, shard_size: int = 10000, sample: int = 0) -> dict[str, float]:
    """Sizes of both; ``sample`` > 0 exports only the first ``sample`` records to .aselmdb (its
    bytes per record are then scaled to all records: the export runs at ~150 records/s)."""
    from omni_data.export import export_aselmdb
    from omni_data.store import Store, build_id_index, write_shard

    store = work / f"{name}-store"
    t0 = time.perf_counter()
    for k in range(0, len(records), shard_size):
        write_shard(store, f"{name}-{k // shard_size:06d}", records[k : k + shard_size])
    build_id_index(store)
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    source = Store(store)
    n_ase = len(records) if not sample or sample >= len(records) else sample
    if n_ase < len(records):
        from omni_data.store import StoreView

        source = StoreView(source, np.arange(n_ase, dtype=np.int64))
    export_aselmdb(source, work / f"{name}.aselmdb")
    t_export = time.perf_counter() - t0
    ase = (work / f"{name}.aselmdb").stat().st_size * len(records) / n_ase
    if n_ase < len(records):
        print(f"(.aselmdb of the first {n_ase:,} records, scaled to {len(records):,})")
    sizes = _sizes(store)
    shards = sizes["lmdb"] + sizes["parquet"]
    n = len(records)
    atoms = sum(r.n_atoms for r in records)
    print(
        f"\n{name}: {n:,} records, {atoms / n:.1f} atoms/record (write {t_write:.1f} s, aselmdb export {t_export:.1f} s)"
    )
    print(f"  .aselmdb                       {ase:>12,.0f} bytes  {ase / n:8.1f} B/record")
    print(
        f"  Omni shard files (lmdb+parquet) {shards:>11,} bytes  {shards / n:8.1f} B/record   "
        f"ratio Omni/aselmdb = {shards / ase:.3f}"
    )
    print(
        f"    lmdb {sizes['lmdb']:,}  parquet {sizes['parquet']:,}  (+ catalog.json {sizes['catalog']:,}, "
        f"id index {sizes['index']:,})"
    )
    whole = shards + sizes["catalog"] + sizes["index"]
    print(f"  Omni with catalog and id index {whole:>11,} bytes  {whole / n:8.1f} B/record   ratio = {whole / ase:.3f}")
    return {"records": n, "aselmdb": ase, "omni": shards, "omni_all": whole}


def oxides() -> list:
    from omni_data.readers import ReadOptions, get_reader

    reader = get_reader("asedb")
    path = SHARED / "asedb" / "fairchem_oxides.db"
    opts = ReadOptions(dataset="oxides", task="pbe")
    return [
        r.normalized()
        for part in reader.partitions(path, 100000)
        for r in reader.read(part, opts)
        if not hasattr(r, "reason")
    ]


def aselmdb_rows(folder: Path) -> list:
    from omni_data.readers import ReadOptions, get_reader

    reader = get_reader("aselmdb")
    out = []
    for path in sorted(folder.glob("*.aselmdb")):
        opts = ReadOptions(dataset="omol", task="omol")
        for part in reader.partitions(path, 100000):
            for r in reader.read(part, opts):
                if not hasattr(r, "reason"):
                    r.id = f"omol:{path.stem}-{r.source_index}"
                    out.append(r.normalized())
    return out


def generated(n: int, seed: int = 0) -> list:
    from omni_data.schema import Record

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        m = int(rng.integers(4, 65))
        out.append(
            Record(
                numbers=rng.integers(1, 84, m),
                positions=rng.random((m, 3)) * 10.0,
                id=f"gen:{k}",
                dataset="gen",
                task="pbe",
                cell=np.eye(3) * 10.0,
                pbc=np.ones(3, bool),
                energy=float(rng.normal() * 100),
                forces=rng.normal(size=(m, 3)),
                stress=rng.normal(size=6) * 1e-3,
                source_file="gen.extxyz",
                source_index=k,
            ).normalized()
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=None, help="a folder of .aselmdb files to add")
    ap.add_argument("--generated", type=int, default=0, help="records of the generated store (0: none)")
    ap.add_argument("--shard-size", type=int, default=10000)
    ap.add_argument(
        "--aselmdb-sample",
        type=int,
        default=0,
        help="export only this many generated records to .aselmdb and scale (0: all)",
    )
    args = ap.parse_args(argv)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {tuple(round(x, 1) for x in __import__('os').getloadavg())}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {"oxides": compare("oxides", oxides(), work, args.shard_size)}
        if args.real is not None:
            results["omol"] = compare("omol", aselmdb_rows(args.real), work, args.shard_size)
        if args.generated:
            t0 = time.perf_counter()
            recs = generated(args.generated)
            print(f"\n(generated {len(recs):,} records in {time.perf_counter() - t0:.1f} s)")
            results["generated"] = compare("generated", recs, work, args.shard_size, args.aselmdb_sample)
    worst = max(r["omni"] / r["aselmdb"] for r in results.values())
    print(f"\nworst ratio Omni shard files / aselmdb: {worst:.3f} ({'goal met' if worst <= 1 else 'goal NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
