"""Where pipeline work runs: in-process, a local Dask cluster, an existing scheduler, or SLURM.

Defaults live in ``cluster.yaml`` beside this file; command-line options override them.
``dask.distributed`` and ``dask_jobqueue`` are imported only when a cluster is started.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "load_defaults",
    "worker_thread_env",
    "usable_cores",
    "SlurmOptions",
    "ClusterConfig",
    "add_cluster_arguments",
    "config_from_args",
    "slurm_cluster",
    "dask_client",
    "workers_ignore_sigint",
    "quiet_dask_logging",
]

DEFAULTS_FILE = Path(__file__).with_name("cluster.yaml")
MODES = ("sync", "local", "scheduler", "slurm")
# OpenMP/BLAS pools a worker's torch, numpy and tblite size from the environment at import
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def load_defaults() -> dict[str, Any]:
    """The packaged cluster defaults (``cluster.yaml``)."""
    with open(DEFAULTS_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def worker_thread_env(threads: int) -> dict[str, str]:
    """The environment of a local Dask worker process: OpenMP, BLAS and torch use ``threads``
    (``--threads-per-worker``, default 1), so N single-threaded workers on N cores never
    oversubscribe them (two spinning threads per process made torch 15-20x slower under load)."""
    return {name: str(threads) for name in THREAD_ENV}


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


@dataclass
class SlurmOptions:
    """One SLURM batch job runs ``processes`` Dask workers on ``cores`` cores."""

    queue: str | None = None
    account: str | None = None
    cores: int = 8
    processes: int = 8
    memory: str = "32GB"
    walltime: str = "04:00:00"
    jobs: int = 1
    local_directory: str | None = None
    job_extra_directives: list[str] = field(default_factory=list)


@dataclass
class ClusterConfig:
    """How to run: ``mode`` is one of ``MODES``; ``workers`` applies to ``local``."""

    mode: str = "local"
    workers: int = 0  # 0 = one per usable core
    threads_per_worker: int = 1
    scheduler: str | None = None
    slurm: SlurmOptions = field(default_factory=SlurmOptions)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"cluster mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "scheduler" and not self.scheduler:
            raise ValueError("cluster mode 'scheduler' needs a scheduler address")
        if self.workers < 0 or self.threads_per_worker < 1:
            raise ValueError(f"workers must be >= 0 and threads >= 1, got {self.workers}, {self.threads_per_worker}")

    @property
    def n_workers(self) -> int:
        return self.workers or usable_cores()


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--workers/--scheduler/--slurm/--no-cluster`` options shared by pipeline commands."""
    slurm = load_defaults()["slurm"]
    g = parser.add_argument_group("where to run (default: a local Dask cluster, one worker per core)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument(
        "--workers", type=int, default=0, metavar="N", help="local Dask worker processes (default: one per core)"
    )
    mode.add_argument("--scheduler", metavar="ADDRESS", help="connect to a running Dask scheduler (tcp://host:8786)")
    mode.add_argument("--slurm", action="store_true", help="start Dask workers as SLURM batch jobs (dask-jobqueue)")
    mode.add_argument("--no-cluster", action="store_true", help="run in this process, one partition after another")
    g.add_argument("--threads-per-worker", type=int, default=1, metavar="N")
    g.add_argument("--queue", default=slurm["queue"], help="SLURM partition (sbatch -p)")
    g.add_argument("--account", default=slurm["account"], help="SLURM account (sbatch -A)")
    g.add_argument("--cores", type=int, default=slurm["cores"], help="cores per SLURM job")
    g.add_argument("--processes", type=int, default=slurm["processes"], help="Dask worker processes per SLURM job")
    g.add_argument("--memory", default=slurm["memory"], help="memory per SLURM job, e.g. 32GB")
    g.add_argument("--walltime", default=slurm["walltime"], help="SLURM walltime HH:MM:SS")
    g.add_argument("--jobs", type=int, default=slurm["jobs"], help="number of SLURM jobs")
    g.add_argument("--local-directory", default=slurm["local_directory"], help="node-local scratch for workers")


def config_from_args(args: argparse.Namespace) -> ClusterConfig:
    """A ``ClusterConfig`` from parsed ``add_cluster_arguments`` options."""
    slurm = SlurmOptions(
        queue=args.queue,
        account=args.account,
        cores=args.cores,
        processes=args.processes,
        memory=args.memory,
        walltime=args.walltime,
        jobs=args.jobs,
        local_directory=args.local_directory,
        job_extra_directives=list(load_defaults()["slurm"].get("job_extra_directives") or []),
    )
    mode = "sync" if args.no_cluster else "scheduler" if args.scheduler else "slurm" if args.slurm else "local"
    return ClusterConfig(
        mode=mode,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        scheduler=args.scheduler,
        slurm=slurm,
    )


def slurm_cluster(opts: SlurmOptions) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` for ``opts`` (no jobs submitted until ``scale``)."""
    from dask_jobqueue import SLURMCluster

    kwargs: dict[str, Any] = dict(
        cores=opts.cores,
        processes=opts.processes,
        memory=opts.memory,
        walltime=opts.walltime,
        job_extra_directives=list(opts.job_extra_directives),
        scheduler_options={"dashboard_address": ":0"},
    )  # any free port; see client.dashboard_link
    if opts.queue:
        kwargs["queue"] = opts.queue
    if opts.account:
        kwargs["account"] = opts.account
    if opts.local_directory:
        kwargs["local_directory"] = opts.local_directory
    return SLURMCluster(**kwargs)


@contextlib.contextmanager
def dask_client(config: ClusterConfig) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for ``config`` (``None`` in ``sync`` mode); tear down after."""
    if config.mode == "sync":
        yield None
        return
    from distributed import Client, LocalCluster

    if config.mode == "scheduler":
        with Client(config.scheduler) as client, _quiet_on_interrupt(client, workers=False):
            yield client
        return
    if config.mode == "slurm":
        cluster = slurm_cluster(config.slurm)
        cluster.scale(jobs=config.slurm.jobs)
    else:
        memory = load_defaults()["local"].get("memory_limit", "auto")
        with workers_ignore_sigint():
            cluster = LocalCluster(
                n_workers=config.n_workers,
                threads_per_worker=config.threads_per_worker,
                processes=True,
                memory_limit=memory,
                dashboard_address=":0",
                env=worker_thread_env(config.threads_per_worker),
            )
    try:
        with Client(cluster) as client, _quiet_on_interrupt(client, workers=True):
            client.register_plugin(_preload_plugin())
            yield client
    finally:
        cluster.close()


# loggers that print a shutdown cut short by Ctrl-C: "Task exception was never retrieved ...
# AllExit", "Worker process still alive after 4.0 seconds, killing", closed-stream errors
DASK_LOGGERS = ("distributed", "asyncio", "tornado", "bokeh")


@contextlib.contextmanager
def workers_ignore_sigint() -> Iterator[None]:
    """Worker processes started inside inherit an ignored SIGINT (a disposition kept across
    ``exec``), so Ctrl-C in a terminal, which signals the whole process group, reaches only the
    client: it stops the cluster, and the workers print no tracebacks of their own."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be changed from the main thread
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def _quiet_on_interrupt(client: Any, workers: bool) -> Iterator[None]:
    """On Ctrl-C, silence Dask's loggers here (and in this cluster's ``workers``) before the
    client and cluster close, so the caller's one line is all that is printed."""
    try:
        yield
    except KeyboardInterrupt:
        quiet_dask_logging()
        if workers:  # their cancelled tasks would log "... ended with CancelledError"
            with contextlib.suppress(Exception):
                client.run(quiet_dask_logging)
        raise


def quiet_dask_logging() -> None:
    """Silence Dask's, asyncio's and tornado's loggers for the rest of the process: after Ctrl-C
    they report the cluster's cut-short shutdown, some of it only when the process exits."""
    for name in DASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


PRELOAD = (
    "numpy",
    "pyarrow",
    "lmdb",
    "msgpack",
    "omni_data.pipeline.ingest",
    "omni_data.store.writer",
    "omni_data.store.arrow",
    "omni_data.store.codec",
    "omni_data.store.lmdb",
    "omni_data.store.lmdb_write",
)


def _preload_plugin() -> Any:
    """A worker plugin importing the ingest stack when each worker starts (now or later, e.g. on
    SLURM), so the first partition of every worker does not pay ~0.2 s of imports."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class OmniPreload(WorkerPlugin):
        name = "omni-preload"

        def setup(self, worker: Any) -> None:
            import importlib

            for module in PRELOAD:
                importlib.import_module(module)

    return OmniPreload()
