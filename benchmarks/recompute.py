"""Benchmark: overhead of the recompute machinery against doing the same work by hand.

Two measurements, each against a baseline run in this process on the same structures:

* emit: ``emit_records`` (mp-pbe-static: pymatgen MPStaticSet + record.json + job.json + atomic
  dir move + jobs table) vs. bare ``MPStaticSet(structure).write_input(dir, potcar_spec=True)``.
* run-local: ``run_jobs`` (Dask synchronous scheduler, record.json in, results.json/npz + markers
  out) vs. a plain loop of tblite ASE single points (GFN2-xTB) with no files.

Structures: the real MD17 ethanol frames (molecules) and the SiC POSCAR (periodic), alternated,
``--n`` of them. Prints seconds and ours/baseline (lower is better; 1.0 = no overhead).

    python benchmarks/recompute.py            # 8 structures, after a 2-structure warm-up (~15 s)
    python benchmarks/recompute.py --n 200
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def structures(n: int) -> list:
    from ase.io import read

    from omni_data.schema import Record

    sic = read(DATA / "structures" / "poscar" / "dpdata_SiC.POSCAR")
    eth = read(DATA / "extxyz" / "schnetpack_md17_ethanol_2000frames_kcalmol.extxyz", index=f":{max(1, n)}")
    out = []
    for i in range(n):
        if i % 2:
            out.append(
                Record(
                    numbers=sic.numbers,
                    positions=sic.positions + 0.001 * i,
                    cell=sic.cell.array,
                    pbc=sic.pbc,
                    id=f"mpa:SiC-{i}",
                    dataset="mpa",
                    task="mpa",
                )
            )
        else:
            a = eth[i % len(eth)]
            out.append(
                Record(
                    numbers=a.numbers,
                    positions=a.positions,
                    id=f"md17:{i}",
                    dataset="md17",
                    task="md17",
                    charge=0.0,
                    spin=1,
                )
            )
    return out


def bench_emit(records: list, tmp: Path) -> tuple[float, float]:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.vasp.sets import MPStaticSet

    from omni_data.recompute.emit import Source, emit_records
    from omni_data.recompute.protocols import load_protocol

    periodic = [r for r in records if r.cell is not None]
    start = time.perf_counter()
    for i, r in enumerate(periodic):
        s = Structure(Lattice(r.cell), [int(z) for z in r.numbers], r.positions, coords_are_cartesian=True)
        MPStaticSet(s).write_input(str(tmp / "base" / str(i)), potcar_spec=True)
    base = time.perf_counter() - start
    protocol = load_protocol("mp-pbe-static")
    start = time.perf_counter()
    emit_records([(r, Source(r.id)) for r in periodic], protocol, tmp / "ours")
    ours = time.perf_counter() - start
    return base, ours


def bench_run(records: list, tmp: Path) -> tuple[float, float]:
    from ase import Atoms
    from tblite.ase import TBLite
    from threadpoolctl import threadpool_limits

    from omni_data.recompute.emit import Source, emit_records
    from omni_data.recompute.local import run_jobs
    from omni_data.recompute.protocols import load_protocol

    emit_records([(r, Source(r.id)) for r in records], load_protocol("gfn2-xtb"), tmp / "xtb")
    with threadpool_limits(limits=1):
        start = time.perf_counter()
        for r in records:
            atoms = Atoms(numbers=r.numbers, positions=r.positions, cell=r.cell, pbc=r.pbc)
            atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
            atoms.get_potential_energy()
        base = time.perf_counter() - start
    start = time.perf_counter()
    results = run_jobs(tmp / "xtb", threads=1)
    ours = time.perf_counter() - start
    bad = [r for r in results if r["state"] != "done"]
    if bad:
        raise SystemExit(f"benchmark run failed: {bad[:3]}")
    return base, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="number of structures (default 8)")
    args = parser.parse_args()
    records = structures(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        bench_emit(records[:2], Path(tmp) / "warm-emit")  # imports and caches out of the timing
        bench_run(records[:2], Path(tmp) / "warm-run")
        base, ours = bench_emit(records, Path(tmp))
        n_periodic = sum(r.cell is not None for r in records)
        print(
            f"emit      {n_periodic} VASP dirs: pymatgen write_input {base:.3f} s, emit_records {ours:.3f} s, "
            f"ratio ours/baseline {ours / base:.2f}"
        )
        base, ours = bench_run(records, Path(tmp))
        print(
            f"run-local {len(records)} GFN2-xTB jobs: bare tblite loop {base:.3f} s, run_jobs {ours:.3f} s, "
            f"ratio ours/baseline {ours / base:.2f}"
        )


if __name__ == "__main__":
    main()
