"""Benchmark: exact fast FPS on descriptors of real and realistic structures (not blobs).

1. Every record the project's readers get from the shared samples (``/work/shared/data``:
   VASP, extxyz, CIF/POSCAR, HDF5 SPICE/ANI, ASE db / aselmdb, LMDB), described with
   ``omni_data.select.descriptors`` (``rdf``, 64 numbers).
2. A generated set in several domains, like the corpus: crystals (CIF/POSCAR and the
   periodic frames of the samples) strained (up to ±4 % per cell component), sometimes
   repeated into a supercell, rattled (σ 0.01–0.12 Å); molecules (SPICE, ANI, QM9, OMol25,
   MD17 frames) rattled (σ 0.01–0.15 Å). Generated for ``--seconds`` or until ``--n``,
   whichever comes first, and described with the same code; cached in ``--cache``.

Then exact fast FPS against fpsample and the plain numpy loop at ``--fractions`` of N (the
baselines only where N*k <= ``--baseline-max-nk``), asserting identical picks.

    python benchmarks/fps_realistic.py --n 200000 --seconds 150 --cache /tmp/realistic.npz
"""

from __future__ import annotations

import argparse
import builtins
import functools
import os
import time
from pathlib import Path

import numpy as np

print = functools.partial(builtins.print, flush=True)

DATA = Path(os.environ.get("OMNI_SHARED_DATA", "/work/shared/data"))
PER_FILE = 400  # records read per sample file at most


def sample_records(root: Path) -> list:
    """All records the project's readers yield from the sample files (at most PER_FILE each)."""
    from omni_data.readers import ReadOptions, get_reader, sniff
    from omni_data.schema import Record

    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.suffix == ".lmdb"):
        if path.name == "PROVENANCE.md" or path.parent.suffix == ".lmdb":
            continue
        if path.suffix in (".cif", ".POSCAR"):  # plain structures (no labels): read with ASE
            import ase.io

            atoms = ase.io.read(path)
            out.append(
                Record(
                    numbers=atoms.numbers,
                    positions=atoms.positions,
                    id=path.stem,
                    dataset=path.stem,
                    task="structures",
                    cell=np.array(atoms.cell),
                    pbc=atoms.pbc,
                ).normalized()
            )
            print(f"  {path.relative_to(root)}: 1 structure ({len(atoms)} atoms, ASE)")
            continue
        try:
            name = sniff(path)
            reader = get_reader(name)
            got = []
            for part in reader.partitions(path, PER_FILE):
                for rec in reader.read(part, ReadOptions(dataset=path.stem, task=path.parent.name)):
                    if isinstance(rec, Record) and len(rec.numbers) > 0:
                        got.append(rec)
                    if len(got) >= PER_FILE:
                        break
                if len(got) >= PER_FILE:
                    break
        except Exception as exc:  # a sample the readers refuse on purpose (truncated, bad)
            print(f"  skip {path.relative_to(root)}: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        out += got
        print(f"  {path.relative_to(root)}: {len(got)} records ({name})")
    return out


def perturbed(rec, rng: np.random.Generator):
    """A strained / repeated / rattled copy of a record (periodic) or a rattled molecule."""
    from omni_data.schema import Record

    pos = np.asarray(rec.positions, float)
    numbers = np.asarray(rec.numbers)
    cell = None if rec.cell is None else np.asarray(rec.cell, float)
    periodic = cell is not None and bool(np.any(rec.pbc))
    if periodic:
        if len(numbers) < 24 and rng.random() < 0.3:  # a 2x1x1-type supercell
            axis = int(rng.integers(0, 3))
            shift = cell[axis]
            pos = np.concatenate([pos, pos + shift])
            numbers = np.concatenate([numbers, numbers])
            cell = cell.copy()
            cell[axis] *= 2
        strain = np.eye(3) + np.triu(rng.uniform(-0.04, 0.04, (3, 3)))
        strain = (strain + strain.T) / 2
        pos = pos @ strain
        cell = cell @ strain
        sigma = rng.uniform(0.01, 0.12)
    else:
        sigma = rng.uniform(0.01, 0.15)
    pos = pos + rng.normal(0, sigma, pos.shape)
    return Record(
        numbers=numbers,
        positions=pos,
        id="g",
        dataset=rec.dataset,
        task=rec.task,
        cell=cell if periodic else None,
        pbc=rec.pbc if periodic else np.zeros(3, bool),
    )


def generate(bases: list, n: int, seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of up to ``n`` perturbed copies (half periodic, half molecules), for ``seconds``."""
    from omni_data.select.descriptors import describe_record

    rng = np.random.default_rng(seed)
    crystals = [r for r in bases if r.cell is not None and np.any(r.pbc)]
    molecules = [r for r in bases if not (r.cell is not None and np.any(r.pbc))]
    out = np.empty((n, 64), np.float32)
    domain = np.empty(n, dtype="U8")
    t0 = time.monotonic()
    i = 0
    while i < n and time.monotonic() - t0 < seconds:
        periodic = rng.random() < 0.5
        pool = crystals if periodic else molecules
        base = pool[int(rng.integers(0, len(pool)))]
        out[i] = describe_record(perturbed(base, rng))
        domain[i] = "crystal" if periodic else "molecule"
        i += 1
        if i % 20000 == 0:
            print(f"  generated {i:,} ({time.monotonic() - t0:.0f} s)")
    return out[:i], domain[:i]


def generate_parallel(bases: list, n: int, seconds: float, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """``generate`` in ``workers`` processes (seeds 0, 1, ...), each for ``n / workers`` structures."""
    if workers <= 1:
        return generate(bases, n, seconds)
    from concurrent.futures import ProcessPoolExecutor

    share = -(-n // workers)
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(generate, [bases] * workers, [share] * workers, [seconds] * workers, range(workers)))
    x = np.concatenate([part[0] for part in parts])[:n]
    return x, np.concatenate([part[1] for part in parts])[:n]


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def compare(x: np.ndarray, ks: list[int], label: str, max_nk: float, threads: int | None) -> None:
    """Omni exact FPS vs fpsample and the numpy loop (where N*k <= max_nk), identical picks."""
    import fpsample

    from omni_data.select._fps_reference import fps_reference
    from omni_data.select.fps import fps

    fps(x[:2000], 10, 0, threads=threads)
    n = len(x)
    print(
        "| set | N | k | omni wall / cpu | distances / (N k) | fpsample wall / cpu | "
        "numpy loop wall / cpu | identical | load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|:---:|---:|")
    for k in ks:
        fast, fw, fc = timed(fps, x, k, 0, threads=threads)
        cells, same = [], None
        if n * k <= max_nk:
            base, bw, bc = timed(fpsample.fps_sampling, x, k, start_idx=0)
            (ref, _), rw, rc = timed(fps_reference, x, k, 0)
            same = bool(np.array_equal(base.astype(np.int64), fast.indices) and np.array_equal(ref, fast.indices))
            cells = [f"{bw:.1f} s / {bc:.1f} s ({bc / fc:.1f}x)", f"{rw:.1f} s / {rc:.1f} s"]
        else:
            cells = ["not run", "not run"]
        share = fast.distances_computed / (n * k)
        print(
            f"| {label} | {n:,} | {k:,} | {fw:.2f} s / {fc:.2f} s | {share:.4f} | {cells[0]} | "
            f"{cells[1]} | {'-' if same is None else ('yes' if same else 'NO')} | "
            f"{os.getloadavg()[0]:.1f} |"
        )
        if same is False:
            raise SystemExit(f"picks differ at k={k}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000, help="generated structures at most")
    p.add_argument("--seconds", type=float, default=150.0, help="generation time budget")
    p.add_argument("--fractions", default="0.001,0.01,0.1")
    p.add_argument("--baseline-max-nk", type=float, default=2e8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="processes generating the set")
    p.add_argument("--cache", help=".npz to keep the generated descriptors (reused when present)")
    args = p.parse_args()
    from omni_data.select.descriptors import describe_records

    print(f"samples under {DATA}:")
    records, rw, _ = timed(sample_records, DATA)
    xs = describe_records(records)
    periodic = sum(1 for r in records if r.cell is not None and np.any(r.pbc))
    print(f"{len(records):,} sample records ({periodic:,} periodic), read + described in {rw:.1f} s")
    if args.cache and os.path.exists(args.cache):
        with np.load(args.cache) as z:
            xg, dom = z["x"], z["domain"]
        print(f"generated set from {args.cache}: {len(xg):,}")
    else:
        (xg, dom), gw, gc = timed(generate_parallel, records, args.n, args.seconds, args.workers)
        print(f"generated {len(xg):,} structures in {gw:.0f} s wall ({args.workers} processes)")
        if args.cache:
            np.savez(args.cache, x=xg, domain=dom)
    print(f"domains: {dict(zip(*np.unique(dom, return_counts=True)))}")
    fr = [float(v) for v in args.fractions.split(",")]
    compare(
        xs,
        sorted({max(2, int(f * len(xs))) for f in fr} | {min(len(xs) // 2, 500)}),
        "samples",
        args.baseline_max_nk,
        args.threads,
    )
    compare(xg, [max(2, int(f * len(xg))) for f in fr], "generated", args.baseline_max_nk, args.threads)


if __name__ == "__main__":
    main()
