"""Benchmark: exact fast FPS against fpsample (and the plain loop), and distributed FPS.

Part 1 (exact): clustered descriptor-like points (see ``clustered``), ``omni_data.select.fps``
against ``fpsample.fps_sampling`` with the same start index, in this process; asserts the
picks are identical and prints wall and CPU seconds and the ratio.

Part 1b (``--k-sweep``): time against k at one N (the issue's 1k, 10k, 100k at N = 1M), omni
fps for every k in one process; fpsample and the plain numpy loop only where N*k is at most
``--baseline-max-nk`` (they cost N*k*d; above that their time is extrapolated, marked "~").

Part 2 (``--dist-n``): distributed FPS (exact FPS in rounds, the shards held by Dask worker
processes) over points generated shard by shard, against one-node exact fast FPS on the same
points: identical picks (asserted), wall time, core-seconds and rounds.

    python benchmarks/fps.py                          # 200k x 64, k=1000 (~1 min)
    python benchmarks/fps.py --n 1000000              # the issue's size (fpsample ~30-60 s)
    python benchmarks/fps.py --n 0 --dist-n 10000000  # distributed on 10M points
    python benchmarks/fps.py --n 1000000 --k-sweep 1000,10000,100000 --threads 1
"""

from __future__ import annotations

import argparse
import builtins
import functools
import os
import time

import numpy as np

from omni_data.select.fps import fps

print = functools.partial(builtins.print, flush=True)  # progress shows up when piped to a file


def clustered(
    n: int, d: int = 64, clusters: int = 100, intrinsic: int = 5, noise: float = 0.05, seed: int = 0, lo: int = 0
) -> np.ndarray:
    """Rows lo..lo+n of a fixed mixture: each cluster a random ``intrinsic``-dimensional
    Gaussian patch (scale 0.5-2) around a uniform centre in [0, 10]^d, plus isotropic noise.

    A model of descriptor sets: many chemical systems, each varying along a few modes (MD,
    relaxations, strain). Rows are generated from a per-row seed, so shards are reproducible.
    """
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 10, (clusters, d))
    scales = rng.uniform(0.5, 2.0, clusters)
    bases = np.linalg.qr(rng.standard_normal((clusters, d, intrinsic)))[0]
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 262144):
        stop = min(n, start + 262144)
        r = np.random.default_rng([seed, lo + start])
        label = r.integers(0, clusters, stop - start)
        z = r.standard_normal((stop - start, intrinsic)) * scales[label, None]
        x = centres[label] + np.einsum("ndm,nm->nd", bases[label], z)
        out[start:stop] = x + noise * r.standard_normal((stop - start, d))
    return out


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def exact_part(args: argparse.Namespace) -> None:
    import fpsample

    x = clustered(args.n, args.d, args.clusters, args.intrinsic, args.noise)
    fps(x[:2000], 10, 0, threads=args.threads)  # compile / load the numba cache first
    print(
        f"exact FPS: N={args.n} d={args.d} k={args.k} clusters={args.clusters} "
        f"intrinsic={args.intrinsic} threads={args.threads} load={os.getloadavg()[0]:.1f}"
    )
    fast, fw, fc = timed(fps, x, args.k, args.start, threads=args.threads)
    base, bw, bc = timed(fpsample.fps_sampling, x, args.k, start_idx=args.start)
    same = bool(np.array_equal(fast.indices, base.astype(np.int64)))
    share = fast.distances_computed / (args.n * args.k)
    print(f"  omni fps     wall {fw:8.2f} s  cpu {fc:8.2f} s  distances {share:.4f} of N*k")
    print(f"  fpsample     wall {bw:8.2f} s  cpu {bc:8.2f} s")
    if args.numpy_loop:
        from omni_data.select._fps_reference import fps_reference

        (ref, _), rw, rc = timed(fps_reference, x, args.k, args.start)
        same = same and bool(np.array_equal(ref, fast.indices))
        print(f"  numpy loop   wall {rw:8.2f} s  cpu {rc:8.2f} s  ratio {rw / fw:6.1f}x")
    print(f"  identical picks: {same}   speed-up vs fpsample: wall {bw / fw:.1f}x  cpu {bc / fc:.1f}x")
    if not same:
        raise SystemExit("picks differ from fpsample")


def sweep_part(args: argparse.Namespace) -> None:
    """omni fps for each k of ``--k-sweep`` (one process), baselines where N*k is small enough."""
    import fpsample

    from omni_data.select._fps_reference import fps_reference

    x = clustered(args.n, args.d, args.clusters, args.intrinsic, args.noise)
    fps(x[:2000], 10, 0, threads=args.threads)
    ks = [int(v) for v in args.k_sweep.split(",")]
    print(f"time vs k: N={args.n} d={args.d} threads={args.threads} load={os.getloadavg()[0]:.1f}")
    print(
        "| k | omni wall / cpu | distances / (N k) | fpsample wall / cpu | numpy loop wall / cpu | identical | load |"
    )
    print("|---:|---:|---:|---:|---:|:---:|---:|")
    rate: dict[str, float] = {}  # baseline cpu seconds per N*k, for the extrapolated rows
    prev = None
    for k in ks:
        fast, fw, fc = timed(fps, x, k, args.start, threads=args.threads)
        cells, same, compared = [], True, False
        for name, fn in (
            ("fpsample", lambda: fpsample.fps_sampling(x, k, start_idx=args.start)),
            ("numpy", lambda: fps_reference(x, k, args.start)[0]),
        ):
            if args.n * k <= args.baseline_max_nk:
                got, bw, bc = timed(fn)
                same = same and bool(np.array_equal(np.asarray(got, np.int64), fast.indices))
                compared = True
                rate[name] = bc / (args.n * k)
                cells.append(f"{bw:.1f} s / {bc:.1f} s")
            elif name in rate:
                cells.append(f"~{rate[name] * args.n * k:.0f} s cpu (extrapolated)")
            else:
                cells.append("not run")
        share = fast.distances_computed / (args.n * k)
        growth = f" (×{fc / prev:.1f} cpu)" if prev else ""
        prev = fc
        print(
            f"| {k:,} | {fw:.1f} s / {fc:.1f} s{growth} | {share:.4f} | {cells[0]} | {cells[1]} "
            f"| {('yes' if same else 'NO') if compared else '-'} | {os.getloadavg()[0]:.1f} |"
        )
        if not same:
            raise SystemExit(f"picks differ from a baseline at k={k}")


def _load(path: str) -> np.ndarray:
    return np.load(path)


def write_shards(folder: str, n: int, size: int, gen: tuple) -> list[tuple[str, int, int]]:
    """Generate the points once into one .npy per shard (what a described store holds)."""
    d, clusters, intrinsic, noise = gen
    out = []
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        path = os.path.join(folder, f"shard{lo // size:05d}.npy")
        if not os.path.exists(path):
            np.save(path, clustered(hi - lo, d, clusters, intrinsic, noise, lo=lo))
        out.append((path, lo, hi))
    return out


def distributed_part(args: argparse.Namespace) -> None:
    """Exact FPS in rounds with the shards held by ``--workers`` Dask worker processes (one
    thread each), then one-node exact FPS on the same points: identical picks, and the cost."""
    import tempfile

    import distributed

    from omni_data.select.distributed import ShardSource, distributed_fps

    n, size = args.dist_n, args.shard
    gen = (args.d, args.clusters, args.intrinsic, args.noise)
    folder = args.workdir or tempfile.mkdtemp(prefix="fps_bench_")
    os.makedirs(folder, exist_ok=True)
    (files, gw, _) = timed(write_shards, folder, n, size, gen)
    print(f"  generated {len(files)} shard files in {folder} ({gw:.1f} s)")
    sources = [ShardSource(functools.partial(_load, f), lo, hi - lo, os.path.basename(f)) for f, lo, hi in files]
    print(
        f"distributed FPS: N={n} in {len(sources)} shards, k={args.k}, top {args.top}, "
        f"{args.workers} worker processes, load={os.getloadavg()[0]:.1f}"
    )
    env = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    with (
        distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None, env=env
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        res, dw, dc = timed(distributed_fps, sources, args.k, start=args.start, client=client, top=args.top, log=print)
    core = res.task_cpu_seconds + dc
    print(
        f"  distributed  wall {dw:8.2f} s  core-seconds {core:.1f} (shards {res.task_cpu_seconds:.1f} "
        f"+ client {dc:.1f})  rounds {res.rounds}  rows pooled {res.pooled:,}  "
        f"distances / (N k) {res.computed / (n * args.k):.4f}"
    )
    x = np.concatenate([s.load() for s in sources])
    exact, ew, ec = timed(fps, x, args.k, args.start, threads=args.threads)
    same = bool(np.array_equal(exact.indices, res.indices) and np.array_equal(exact.sqdist, res.sqdist))
    print(f"  exact fast   wall {ew:8.2f} s  cpu {ec:8.2f} s (threads={args.threads})  identical picks: {same}")
    print(
        "| N | k | shards | exact wall / cpu | distributed wall / core-s | rounds | identical | core-s ratio | load |"
    )
    print(
        f"| {n:,} | {args.k:,} | {len(sources)} x {size:,} | {ew:.1f} s / {ec:.1f} s | {dw:.1f} s / {core:.1f} "
        f"| {res.rounds} | {'yes' if same else 'NO'} | {core / ec:.2f} | {os.getloadavg()[0]:.1f} |"
    )
    if not same:
        raise SystemExit("distributed picks differ from exact FPS")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000, help="points for the exact comparison (0: skip)")
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--intrinsic", type=int, default=5)
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="numba threads (default: all cores)")
    p.add_argument("--numpy-loop", action="store_true", help="also time the plain numpy loop")
    p.add_argument("--k-sweep", default="", help="comma-separated k values: time vs k at --n")
    p.add_argument(
        "--baseline-max-nk",
        type=float,
        default=1e9,
        help="run fpsample / the numpy loop only where N*k is at most this",
    )
    p.add_argument("--dist-n", type=int, default=0, help="points for the distributed run (0: skip)")
    p.add_argument("--shard", type=int, default=500_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--top", type=int, default=2048, help="distributed: rows each shard reports per round")
    p.add_argument("--workdir", help="folder for the generated shard files (default: a new temp dir)")
    args = p.parse_args()
    if args.n and args.k_sweep:
        sweep_part(args)
    elif args.n:
        exact_part(args)
    if args.dist_n:
        distributed_part(args)


if __name__ == "__main__":
    main()
