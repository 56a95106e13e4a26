"""``select-bridge``: choose the domain-bridging set and write ``selection.parquet`` + coverage.

Flow: descriptor rows of all stores -> drop rows of ``--tasks`` not asked for and rows already
selected (``--exclude``: they become FPS seeds, so a second round extends the first) -> pick
``k`` rows with the strategy -> guarantee ``--min-per-task`` by trimming the pick order and
topping up inside each short task (FPS seeded with everything chosen) -> write
``selection.parquet`` (atomic) and ``coverage.json`` / ``coverage.txt``.

Start rule: without seeds the first pick is ``RandomState(seed).randint(0, n)`` over the
candidate rows, which is exactly what ``fpsample.fps_sampling(start_idx=None)`` draws after
``np.random.seed(seed)``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.select.coverage import CoverageReport, coverage_report, report_from_stats
from omni_data.select.descriptor_set import DescriptorSet, load_descriptor_set
from omni_data.select.earlier import excluded_ids, seed_vectors
from omni_data.select.outputs import summary_text as summary_text  # the CLI and the demo import it from here
from omni_data.select.outputs import write_selection, write_text_atomic
from omni_data.select.strategies import STRATEGIES, PickRequest, Picks, Scorer

__all__ = [
    "SelectConfig",
    "start_row",
    "fps_rows",
    "pick",
    "distributed_pick",
    "distributed_coverage",
    "score_rows",
    "min_per_task",
    "select_bridge",
    "summary_text",
]

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float16", "bfloat16")
ENGINES = ("auto", "numba", "numpy", "torch")
MODES = ("exact", "distributed")


@dataclass
class SelectConfig:
    """Validated settings of one select-bridge run."""

    stores: list[str]
    out: str
    fraction: float | None = None
    count: int | None = None
    tasks: list[str] | None = None
    min_per_task: int = 0
    seed: int = 0
    strategy: str = "fps"
    kind: str = "rdf"
    mode: str = "exact"  # or "distributed"
    exclude: list[str] = field(default_factory=list)
    pool: float = 4.0  # hybrid: FPS among the pool * k largest errors
    top: int = 2048  # distributed: rows each shard reports per round
    progress_every: float = 5.0  # seconds between progress lines on stderr (0: none)
    device: str = "cpu"  # exact FPS: "cuda" runs the torch engine on the GPU
    dtype: str = "float32"  # torch engine storage: float32, float16 or bfloat16
    engine: str = "auto"  # auto: numba on cpu/float32, torch for cuda or a half dtype

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {sorted(STRATEGIES)}, got {self.strategy!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'exact' or 'distributed', got {self.mode!r}")
        self._check_device()
        if (self.fraction is None) == (self.count is None):
            raise ValueError("give exactly one of fraction or count")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if not self.progress_every >= 0.0:
            raise ValueError(f"progress_every must be >= 0 seconds, got {self.progress_every}")
        if self.min_per_task < 0:
            raise ValueError(f"min_per_task must be >= 0, got {self.min_per_task}")
        if self.top < 1:
            raise ValueError(f"top must be >= 1 row, got {self.top}")

    def _check_device(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        torch_needed = self.device != "cpu" or self.dtype != "float32"
        if torch_needed and self.engine not in ("auto", "torch"):
            raise ValueError(f"device {self.device!r} / dtype {self.dtype!r} need engine 'torch', not {self.engine!r}")
        if (torch_needed or self.engine == "torch") and self.mode != "exact":
            raise ValueError(
                "device/dtype/engine torch apply to --mode exact only "
                "(distributed shards run the CPU kernel on their workers)"
            )

    @property
    def fps_engine(self) -> str:
        """The FPS engine this run uses (``fps.fps``'s ``engine``)."""
        if self.engine != "auto":
            return self.engine
        return "torch" if self.device != "cpu" or self.dtype != "float32" else "auto"


def start_row(seed: int, n: int) -> int:
    """fpsample's random start: ``np.random.randint(0, n)`` after ``np.random.seed(seed)``."""
    return int(np.random.RandomState(seed).randint(low=0, high=n))


def fps_rows(
    x: np.ndarray,
    k: int,
    seeds: np.ndarray,
    start: int,
    progress_every: float = 0.0,
    label: str = "select-bridge",
    engine: str = "auto",
    device: str = "cpu",
    dtype: str = "float32",
) -> Picks:
    """Exact FPS over ``x`` seeded with ``seeds`` (or started at ``start``).

    ``progress_every > 0``: a progress line (picks, radius, ETA) on stderr that often.
    ``engine``/``device``/``dtype``: ``fps.fps``'s engine, device and storage (torch engine).
    """
    from omni_data.select.fps import fps
    from omni_data.select.progress import PickProgress

    m = len(seeds)
    both = np.concatenate([seeds, x]) if m else x
    watch = PickProgress(k, seeds=m, label=label) if progress_every > 0 else None
    res = fps(
        both,
        m + k,
        start_idx=list(range(m)) if m else start,
        progress=watch,
        progress_every=progress_every or 5.0,
        engine=engine,
        device=device,
        storage=dtype,
    )
    return Picks(res.indices[m:] - m, np.sqrt(res.sqdist[m:].astype(np.float64)))


def pick(
    cfg: SelectConfig,
    ds: DescriptorSet,
    cand: np.ndarray,
    k: int,
    seeds: np.ndarray,
    scorer: Scorer | None,
    client: Any = None,
) -> tuple[Picks, np.ndarray | None]:
    """Apply the strategy (``strategies.STRATEGIES``) over candidate rows ``cand``."""
    return STRATEGIES[cfg.strategy](PickRequest(cfg, ds, cand, k, seeds, scorer, client))


def distributed_pick(
    cfg: SelectConfig, ds: DescriptorSet, cand: np.ndarray, k: int, seeds: np.ndarray, start: int, client: Any
) -> Picks:
    """Exact FPS with the shards held by the client's workers (``distributed.distributed_fps``),
    each loading only its candidate rows; in this process when there is no client."""
    from omni_data.select.distributed import ShardSource, distributed_fps

    sources = []
    for s in ds.shards:
        rows = cand[(cand >= s.offset) & (cand < s.offset + s.n)]
        if len(rows) == 0:
            continue
        whole = len(rows) == s.n
        sources.append(
            ShardSource(
                ds.loader(s, None if whole else rows - s.offset),
                s.offset,
                len(rows),
                f"{Path(s.store).name}/{s.shard}",
                None if whole else rows,
                ds.tasks[rows],
            )
        )
    log = None
    if cfg.progress_every > 0:

        def log(line: str) -> None:
            print(f"select-bridge: {line}", file=sys.stderr, flush=True)

    res = distributed_fps(
        sources,
        k,
        start=start,
        seeds=seeds if len(seeds) else None,
        client=client if hasattr(client, "submit") else None,
        top=cfg.top,
        log=log,
    )
    return Picks(res.indices, np.sqrt(res.sqdist.astype(np.float64)), coverage=res.task_stats)


def distributed_coverage(
    ds: DescriptorSet,
    cand: np.ndarray,
    rows: np.ndarray,
    seeds: np.ndarray,
    settings: dict[str, Any],
    client: Any = None,
) -> CoverageReport:
    """coverage.json numbers with one Dask task per shard; the client holds only the picks.

    Each task loads its shard's candidate rows, measures their distance to the selection (picks
    plus seeds) and returns per-task (count, max, sum); the client merges those.
    """
    import dask

    from omni_data.select.coverage import shard_stats
    from omni_data.select.distributed import _compute

    centres = ds.vectors(rows)
    if len(seeds):
        centres = np.concatenate([centres, seeds.astype(np.float32)])
    shared = dask.delayed(centres, pure=True)  # one copy in the graph, not one per task
    tasks = []
    for s in ds.shards:
        mine = cand[(cand >= s.offset) & (cand < s.offset + s.n)]
        if len(mine):
            whole = len(mine) == s.n
            load = ds.loader(s, None if whole else mine - s.offset)
            tasks.append(dask.delayed(shard_stats)(load, ds.tasks[mine], shared))
    parts = _compute(tasks, client or "sync", None)
    return report_from_stats(parts, ds.tasks[rows], len(seeds), settings)


def score_rows(ds: DescriptorSet, rows: np.ndarray, scorer: Scorer) -> np.ndarray:
    """Model errors of the records behind ``rows`` (read back from their stores)."""
    from omni_data.select.strategies import score_records
    from omni_data.store import Store

    stores: dict[str, Any] = {}
    records = []
    for r in rows:
        store = stores.setdefault(ds.store_of[r], Store(ds.store_of[r]))
        records.append(store.get(str(ds.ids[r])))
    return score_records(scorer, records)


def min_per_task(
    cfg: SelectConfig,
    ds: DescriptorSet,
    cand: np.ndarray,
    picks: Picks,
    seeds: np.ndarray,
    k: int,
    scores: np.ndarray | None,
) -> tuple[Picks, np.ndarray]:
    """Trim the pick order and top up short tasks so every task gets ``cfg.min_per_task``."""
    if cfg.min_per_task == 0:
        return picks, np.full(len(picks.rows), "strategy", dtype=object)
    need_all = {t: min(cfg.min_per_task, int((ds.tasks[cand] == t).sum())) for t in np.unique(ds.tasks[cand])}
    m = len(picks.rows)
    while True:
        have = {t: int((ds.tasks[picks.rows[:m]] == t).sum()) for t in need_all}
        deficit = sum(max(0, need_all[t] - have[t]) for t in need_all)
        if m + deficit <= k:
            break
        m = k - deficit
    rows, dist = list(picks.rows[:m]), list(picks.distance[:m])
    score = None if picks.score is None else list(picks.score[:m])
    reason = ["strategy"] * m
    for t in sorted(need_all):
        short = need_all[t] - have[t]
        if short <= 0:
            continue
        pool = cand[(ds.tasks[cand] == t) & ~np.isin(cand, rows)]
        if cfg.strategy == "error":
            assert scores is not None  # the error strategy scored every candidate
            sub = pool[np.lexsort((pool, -scores[np.searchsorted(cand, pool)]))][:short]
            d = np.full(len(sub), np.nan)
        else:
            xp = ds.vectors(pool)
            parts = [seeds.reshape(-1, xp.shape[1])]
            if rows:
                parts.append(ds.vectors(np.asarray(rows, dtype=np.int64)))
            p = fps_rows(xp, short, np.concatenate(parts).astype(np.float32), 0)
            sub, d = pool[p.rows], p.distance
        rows += list(sub)
        dist += list(d)
        reason += ["min-per-task"] * len(sub)
        if score is not None and scores is not None:
            score += list(scores[np.searchsorted(cand, sub)])
    out = Picks(
        np.asarray(rows, dtype=np.int64),
        np.asarray(dist, dtype=np.float64),
        None if score is None else np.asarray(score),
    )
    return out, np.asarray(reason, dtype=object)


def select_bridge(cfg: SelectConfig, scorer: Scorer | None = None, client: Any = None) -> dict[str, Any]:
    """Run one selection; returns a summary (also what the CLI prints)."""
    t0 = time.perf_counter()
    if cfg.fps_engine == "torch" and cfg.strategy == "fps":
        from omni_data.select.fps_torch import check_device

        check_device(cfg.device)  # before any descriptor is read
    ds = load_descriptor_set(cfg.stores, cfg.kind, with_vectors=cfg.mode == "exact")
    ex_ids, where = excluded_ids(cfg.exclude)
    ex_rows, seeds = seed_vectors(ds, ex_ids, where)
    allowed = ~np.isin(np.arange(len(ds)), ex_rows)
    if cfg.tasks:
        unknown = sorted(set(cfg.tasks) - set(ds.tasks.tolist()))
        if unknown:
            raise ValueError(f"tasks {unknown} not in the stores (have {sorted(set(ds.tasks.tolist()))})")
        allowed &= np.isin(ds.tasks, cfg.tasks)
    cand = np.flatnonzero(allowed)
    if len(cand) == 0:
        raise ValueError("no candidate structures left after --tasks and --exclude")
    fraction = cfg.fraction if cfg.fraction is not None else 0.0  # SelectConfig sets count or fraction
    k = cfg.count if cfg.count is not None else max(1, int(round(fraction * len(cand))))
    if k > len(cand):
        raise ValueError(f"asked for {k} picks but only {len(cand)} candidates")
    if cfg.min_per_task * len(np.unique(ds.tasks[cand])) > k:
        raise ValueError(
            f"--min-per-task {cfg.min_per_task} x {len(np.unique(ds.tasks[cand]))} tasks exceeds the {k} picks"
        )
    picks, scores = pick(cfg, ds, cand, k, seeds, scorer, client)
    zero = np.flatnonzero(picks.distance == 0.0)
    if len(zero):
        raise ValueError(
            f"pick {int(zero[0])} has distance 0: fewer than {k} distinct descriptors "
            "among the candidates; ask for fewer picks"
        )
    fps_picks = picks
    picks, reason = min_per_task(cfg, ds, cand, picks, seeds, k, scores)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = write_selection(out, ds, picks, reason)
    settings = {
        "strategy": cfg.strategy,
        "mode": cfg.mode,
        "kind": cfg.kind,
        "seed": cfg.seed,
        "k": k,
        "min_per_task": cfg.min_per_task,
        "stores": cfg.stores,
        "exclude": cfg.exclude,
        "device": cfg.device,
        "dtype": cfg.dtype,
        "engine": cfg.fps_engine,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if cfg.mode == "distributed" and fps_picks.coverage is not None and np.array_equal(fps_picks.rows, picks.rows):
        # the shards' final distances are the coverage: no second pass over the data
        report = report_from_stats(fps_picks.coverage, ds.tasks[picks.rows], len(seeds), settings)
    elif cfg.mode == "distributed":
        report = distributed_coverage(ds, cand, picks.rows, seeds, settings, client)
    else:
        report = coverage_report(
            ds.vectors(cand), ds.tasks[cand], np.searchsorted(cand, picks.rows), seeds if len(seeds) else None, settings
        )
    write_text_atomic(out / "coverage.json", report.to_json())
    write_text_atomic(out / "coverage.txt", report.to_text())
    return {
        "selection": str(path),
        "coverage": [str(out / "coverage.json"), str(out / "coverage.txt")],
        "picked": len(picks.rows),
        "candidates": len(cand),
        "seeds": len(seeds),
        "strategy": cfg.strategy,
        "mode": cfg.mode,
        "seconds": settings["seconds"],
        "covering_radius": report.covering_radius,
        "per_task": {t: c.picks for t, c in report.tasks.items()},
        "covering_radius_per_task": {t: c.covering_radius for t, c in report.tasks.items()},
    }
