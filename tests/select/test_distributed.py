"""Distributed FPS (local FPS per shard on Dask, then global FPS) against exact FPS."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from omni_data.select.coverage import nearest_sqdist
from omni_data.select.distributed import ShardSource, distributed_fps, local_quota
from omni_data.select.fps import fps


def _rows(path: str, lo: int, hi: int) -> np.ndarray:
    return np.load(path, mmap_mode="r")[lo:hi]


@pytest.fixture(scope="module")
def points_200k(tmp_path_factory):
    rng = np.random.default_rng(7)
    n, d, clusters = 200_000, 6, 30
    centres = rng.uniform(0, 10, (clusters, d))
    label = rng.integers(0, clusters, n)
    x = centres[label] + rng.standard_normal((n, d)) * rng.uniform(0.2, 1.0, clusters)[label, None]
    path = tmp_path_factory.mktemp("fps") / "x.npy"
    np.save(path, x.astype(np.float32))
    return str(path), x.astype(np.float32)


def _sources(path, n, shard):
    return [
        ShardSource(functools.partial(_rows, path, lo, min(n, lo + shard)), lo, min(n, lo + shard) - lo, f"s{lo}")
        for lo in range(0, n, shard)
    ]


@pytest.mark.parametrize("k", [200])
def test_covering_radius_within_1_2_of_exact(points_200k, k):
    path, x = points_200k
    exact = fps(x, k, 0)
    dist = distributed_fps(_sources(path, len(x), 25_000), k, start=0, scheduler="sync")
    assert len(np.unique(dist.indices)) == k and dist.indices[0] == 0
    r_exact = np.sqrt(nearest_sqdist(x, x[exact.indices]).max())
    r_dist = np.sqrt(nearest_sqdist(x, x[dist.indices]).max())
    assert r_dist <= 1.2 * r_exact


def test_one_shard_with_everything_kept_is_exact(points_200k):
    path, x = points_200k
    small = x[:3000]
    src = [ShardSource(functools.partial(_rows, path, 0, 3000), 0, 3000, "all")]
    res = distributed_fps(src, 40, start=11, oversample=1000, scheduler="sync")
    np.testing.assert_array_equal(res.indices, fps(small, 40, 11).indices)


def test_seeds_are_never_picked_and_processes_scheduler(points_200k):
    path, x = points_200k
    n = 20_000
    seeds = x[[5, 15_000]]
    res = distributed_fps(_sources(path, n, 5_000), 30, seeds=seeds, scheduler="processes", num_workers=2)
    assert not {5, 15_000} & set(res.indices.tolist())
    # same as exact FPS seeded with the two points, up to the candidate restriction
    exact = fps(np.concatenate([seeds, x[:n]]), 32, start_idx=[0, 1]).indices[2:] - 2
    r_exact = np.sqrt(nearest_sqdist(x[:n], np.concatenate([seeds, x[exact]])).max())
    r_dist = np.sqrt(nearest_sqdist(x[:n], np.concatenate([seeds, x[res.indices]])).max())
    assert r_dist <= 1.2 * r_exact


def test_quota_and_errors(points_200k):
    assert local_quota(1000, 10_000, 100, 3.0, 8) == 30
    assert local_quota(10, 10_000, 100, 3.0, 8) == 8
    assert local_quota(5, 10_000, 100, 3.0, 8) == 5
    path, x = points_200k
    with pytest.raises(ValueError, match="k"):
        distributed_fps(_sources(path, 1000, 500), 2000, scheduler="sync")


def test_stage_lines_report_candidates_and_radius(points_200k):
    path, x = points_200k
    n = 40_000
    lines: list[str] = []
    res = distributed_fps(_sources(path, n, 10_000), 60, start=3, scheduler="sync", log=lines.append, refine=1)
    assert lines[0].startswith("distributed FPS: local round on 4 shards: ")
    assert lines[1].startswith("distributed FPS: global FPS: 60 picks, radius ")
    assert all("elapsed" in line for line in lines)
    assert any(line.startswith("distributed FPS: refinement 1: ") for line in lines[2:])
    # the last radius reported is the covering radius of the picks over the final candidates
    reported = float(lines[-1].split("radius ")[1].split()[0].rstrip(";,"))
    assert reported <= np.sqrt(nearest_sqdist(x[:n], x[res.indices]).max()) * (1 + 1e-5)
    assert f"{res.n_candidates:,} candidates" in "".join(lines) or "done" in lines[-1]


def test_refinement_checks_only_points_in_doubt_and_sends_what_a_full_fps_sends():
    """``outliers`` bounds each point by its local pick's distance to the selection and runs the
    seeded FPS only over the rest; the rows sent equal those of the seeded FPS over the whole
    shard (the previous refinement), checked with the independent plain loop."""
    from omni_data.select._fps_reference import fps_reference
    from omni_data.select.distributed import _local_fps, outliers

    rng = np.random.default_rng(11)
    centres = rng.uniform(0, 10, (40, 5))
    label = rng.integers(0, 40, 6000)
    x = (centres[label] + 0.4 * rng.standard_normal((6000, 5))).astype(np.float32)
    source = ShardSource(functools.partial(np.array, x), 1000, len(x), "s")
    seeds = x[[17]]
    chosen = np.concatenate([seeds, x[rng.choice(len(x), 60, replace=False)]])
    quota = 150
    local = _local_fps(x, quota, seeds, threads=1)
    picks = np.concatenate([seeds, x[local.indices[1:] - 1]])
    pick_dist = np.sqrt(nearest_sqdist(picks, chosen))
    full = np.sqrt(nearest_sqdist(x, chosen))
    radius = float(np.quantile(full, 0.97))
    rows, vecs, checked = outliers(source, quota, seeds, 50, chosen, pick_dist, radius)
    assert 0 < checked < len(x) // 2  # most points were certified without a distance
    both = np.concatenate([chosen, x])
    ref_i, ref_d = fps_reference(both, len(chosen) + 50, list(range(len(chosen))))
    far = ref_d[len(chosen) :].astype(np.float64) > radius * radius
    want = ref_i[len(chosen) :][far] - len(chosen)
    assert len(want) >= 4
    np.testing.assert_array_equal(rows, 1000 + want)
    np.testing.assert_array_equal(vecs, x[want])
    capped, _, _ = outliers(source, quota, seeds, 3, chosen, pick_dist, radius)
    np.testing.assert_array_equal(capped, 1000 + want[:3])
