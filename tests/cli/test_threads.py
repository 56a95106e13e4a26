"""Threads are set deliberately (issue 20, item 8): every local Dask worker of ``omni-data``
runs OpenMP, BLAS and torch with ``--threads-per-worker`` threads (default 1)."""

from __future__ import annotations

import os

from omni_data.pipeline.cluster import THREAD_ENV, ClusterConfig, dask_client, worker_thread_env


def _worker_threads() -> tuple[dict[str, str], int]:
    import torch

    return {name: os.environ.get(name, "") for name in THREAD_ENV}, torch.get_num_threads()


def test_worker_thread_env_names_every_pool():
    assert worker_thread_env(1) == {name: "1" for name in THREAD_ENV}
    assert {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"} <= set(THREAD_ENV)


def test_local_workers_use_threads_per_worker():
    """Two threads per worker (distributed's own default would be one): the workers' environment
    and torch inside them follow the option, not the parent's $OMP_NUM_THREADS."""
    with dask_client(ClusterConfig(mode="local", workers=1, threads_per_worker=2)) as client:
        ((env, torch_threads),) = client.run(_worker_threads).values()
    assert env == {name: "2" for name in THREAD_ENV}
    assert torch_threads == 2
