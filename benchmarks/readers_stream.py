"""Benchmark: the streaming readers' two costly steps against the obvious baselines.

1. MPtrj partition index: ``_json_scan.scan_object`` (numpy byte scan, no parse) vs a full
   streaming parse with ``ijson.kvitems`` (the baseline a reader would otherwise need to find
   mp-id boundaries), on a generated MPtrj-layout JSON file of ``--mb`` megabytes.
2. Safe unpickling: ``_pickle_tensors.loads_record`` (restricted, tensors rebuilt as numpy, no
   torch) vs plain ``pickle.loads`` with torch installed (unsafe), on the real LiPS LMDB values.

Prints seconds and the ratio new/baseline for each (lower is better). Both run in this process.

    python benchmarks/readers_stream.py              # ~40 MB JSON, 200 LMDB values x 5 (~1 min)
    python benchmarks/readers_stream.py --mb 1000    # closer to the 12 GB MPtrj per-GB rate
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def make_mptrj(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write an MPtrj-layout JSON of about ``megabytes`` MB; return the number of frames."""
    rng = np.random.default_rng(seed)
    frames = 0
    size = 0
    with open(path, "w") as fh:
        fh.write("{")
        m = 0
        while size < megabytes * 1e6:
            n_frames = int(rng.integers(1, 30))
            mp = {}
            for f in range(n_frames):
                n = int(rng.integers(2, 40))
                mp[f"mp-{m}-{f}-0"] = {
                    "structure": {
                        "@module": "pymatgen.core.structure",
                        "@class": "Structure",
                        "lattice": {"matrix": (np.eye(3) * 5).tolist(), "pbc": [True, True, True]},
                        "sites": [
                            {
                                "species": [{"element": "O", "occu": 1}],
                                "abc": p.tolist(),
                                "xyz": (p * 5).tolist(),
                                "label": "O",
                                "properties": {"magmom": 0.0},
                            }
                            for p in rng.uniform(size=(n, 3))
                        ],
                    },
                    "uncorrected_total_energy": float(rng.normal() - 5 * n),
                    "corrected_total_energy": float(rng.normal() - 5 * n),
                    "force": rng.normal(size=(n, 3)).tolist(),
                    "stress": rng.normal(size=(3, 3)).tolist(),
                    "magmom": None,
                    "mp_id": f"mp-{m}",
                }
            text = ("," if m else "") + json.dumps(f"mp-{m}") + ":" + json.dumps(mp)
            fh.write(text)
            size += len(text)
            frames += n_frames
            m += 1
        fh.write("}")
    return frames


def bench_scan(megabytes: float) -> None:
    import ijson

    from omni_data.readers._json_scan import scan_object

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "MPtrj_bench.json"
        frames = make_mptrj(path, megabytes)
        mb = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            index = scan_object(fh, str(path))
        t_scan = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_base = 0
        with open(path, "rb") as fh:
            for _key, value in ijson.kvitems(fh, "", use_float=True):
                n_base += len(value)
        t_base = time.perf_counter() - t0
        assert sum(index.children) == n_base == frames, (sum(index.children), n_base, frames)
        print(
            f"[mptrj index] {mb:.0f} MB, {len(index.offsets)} mp-ids, {frames} frames (ijson backend {ijson.backend})"
        )
        print(
            f"  scan_object {t_scan:.2f} s ({mb / t_scan:.0f} MB/s)  |  ijson full parse {t_base:.2f} s "
            f"({mb / t_base:.0f} MB/s)  |  ratio scan/ijson = {t_scan / t_base:.3f}"
        )


def bench_unpickle(lmdb_path: Path, repeats: int) -> None:
    import lmdb
    import torch  # noqa: F401  -- the baseline needs torch importable to rebuild tensors

    from omni_data.readers._pickle_tensors import loads_record

    env = lmdb.open(str(lmdb_path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        values = [v for _k, v in txn.cursor()]
    env.close()
    t0 = time.perf_counter()
    for _ in range(repeats):
        for v in values:
            loads_record(v, "bench")
    t_safe = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        t0 = time.perf_counter()
        for _ in range(repeats):
            for v in values:
                pickle.loads(v)
        t_plain = time.perf_counter() - t0
    n = repeats * len(values)
    print(f"[unpickle] {len(values)} LiPS values x {repeats}")
    print(
        f"  restricted (numpy) {1e6 * t_safe / n:.0f} us/value  |  pickle.loads+torch {1e6 * t_plain / n:.0f} us/value"
        f"  |  ratio restricted/plain = {t_safe / t_plain:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=40.0, help="size of the generated MPtrj JSON (MB)")
    ap.add_argument("--repeats", type=int, default=5, help="passes over the LiPS LMDB values")
    default_lmdb = (
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lmdb" / "matsciml_lips_devset_200.lmdb"
    )
    ap.add_argument("--lmdb", type=Path, default=default_lmdb)
    args = ap.parse_args()
    bench_scan(args.mb)
    if args.lmdb.is_file():
        bench_unpickle(args.lmdb, args.repeats)
    else:
        print(f"[unpickle] skipped: {args.lmdb} not found")


if __name__ == "__main__":
    main()
