"""Cluster choice from CLI options, and the SLURM batch script dask-jobqueue renders."""

from __future__ import annotations

import argparse

import pytest

from omni_data.pipeline.cluster import (
    ClusterConfig,
    add_cluster_arguments,
    config_from_args,
    load_defaults,
    slurm_cluster,
)


def _parse(*argv: str) -> ClusterConfig:
    parser = argparse.ArgumentParser()
    add_cluster_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_modes_from_options():
    assert _parse().mode == "local" and _parse().n_workers >= 1
    assert _parse("--workers", "3").n_workers == 3
    assert _parse("--no-cluster").mode == "sync"
    assert _parse("--scheduler", "tcp://h:8786").scheduler == "tcp://h:8786"
    cfg = _parse("--slurm", "--queue", "gpu", "--cores", "16", "--memory", "64GB", "--jobs", "3")
    assert (cfg.mode, cfg.slurm.queue, cfg.slurm.cores, cfg.slurm.memory, cfg.slurm.jobs) == (
        "slurm",
        "gpu",
        16,
        "64GB",
        3,
    )
    assert _parse("--slurm").slurm.walltime == load_defaults()["slurm"]["walltime"]
    with pytest.raises(SystemExit):
        _parse("--slurm", "--no-cluster")  # mutually exclusive
    with pytest.raises(ValueError, match="scheduler address"):
        ClusterConfig(mode="scheduler")


def test_slurm_job_script_renders_the_options():
    cfg = _parse(
        "--slurm",
        "--queue",
        "debug",
        "--account",
        "chem",
        "--cores",
        "4",
        "--processes",
        "2",
        "--memory",
        "8GB",
        "--walltime",
        "01:30:00",
    )
    cluster = slurm_cluster(cfg.slurm)  # starts only a local scheduler; submits nothing
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    for expected in ("#SBATCH -p debug", "#SBATCH -A chem", "#SBATCH --cpus-per-task=4", "#SBATCH -t 01:30:00"):
        assert expected in lines, (expected, script)
    assert "--nworkers 2" in script and "--nthreads 2" in script
