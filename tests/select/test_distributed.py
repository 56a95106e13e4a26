"""Exact FPS in rounds over shards held by workers: the same picks as ``fps`` on all rows, and
as the independent plain loop, whatever the shard split, the rows each shard reports per
round, the tie rule, seeds and where the start row lives."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from omni_data.select._fps_reference import fps_reference
from omni_data.select.distributed import ShardFPS, ShardSource, distributed_fps
from omni_data.select.fps import fps


def _rows(path: str, lo: int, hi: int) -> np.ndarray:
    return np.load(path, mmap_mode="r")[lo:hi]


def _take(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return x[rows]


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    """30k clustered 6-d points (float32), saved once for the shard loaders."""
    rng = np.random.default_rng(7)
    n, d, clusters = 30_000, 6, 30
    centres = rng.uniform(0, 10, (clusters, d))
    label = rng.integers(0, clusters, n)
    x = (centres[label] + rng.standard_normal((n, d)) * rng.uniform(0.2, 1.0, clusters)[label, None]).astype(np.float32)
    path = tmp_path_factory.mktemp("fps") / "x.npy"
    np.save(path, x)
    return str(path), x


def _sources(path: str, n: int, shard: int) -> list[ShardSource]:
    return [
        ShardSource(functools.partial(_rows, path, lo, min(n, lo + shard)), lo, min(n, lo + shard) - lo, f"s{lo}")
        for lo in range(0, n, shard)
    ]


@pytest.mark.parametrize(("shard", "top"), [(30_000, 2048), (7_000, 64), (2_500, 7)])
def test_picks_and_distances_equal_one_node_fps(points, shard, top):
    path, x = points
    exact = fps(x, 400, 0)
    res = distributed_fps(_sources(path, len(x), shard), 400, start=0, top=top)
    np.testing.assert_array_equal(res.indices, exact.indices)
    np.testing.assert_array_equal(res.sqdist, exact.sqdist)  # bit for bit, float32
    assert res.rounds >= 1 and res.pooled >= res.rounds
    if top == 7:
        assert res.rounds > 400 // (7 * 13)  # few rows per report: many rounds, still exact


def test_a_small_client_pool_still_gives_the_exact_picks(points):
    """The client keeps only its first ``pool_rows`` reported rows; the next one bounds the rest."""
    path, x = points
    res = distributed_fps(_sources(path, len(x), 4_000), 200, start=7, top=64, pool_rows=5)
    np.testing.assert_array_equal(res.indices, fps(x, 200, 7).indices)


def test_first_by_key_orders_by_value_then_the_tie_rule():
    from omni_data.select.distributed import first_by_key

    values = np.array([1.0, 3.0, 3.0, 2.0, 3.0], dtype=np.float32)
    rows = np.array([10, 11, 12, 13, 14])
    keep, nxt = first_by_key(values, rows, 2, last=True)
    assert sorted(rows[keep].tolist()) == [12, 14] and nxt == (3.0, 11)
    keep, nxt = first_by_key(values, rows, 2, last=False)
    assert sorted(rows[keep].tolist()) == [11, 12] and nxt == (3.0, 14)
    keep, nxt = first_by_key(values, rows, 5, last=True)
    assert len(keep) == 5 and nxt == (-1.0, -1)


def test_equal_to_the_plain_loop_with_ties_first_and_last(tmp_path):
    """Every point twice (every argmax a tie): the tie rule decides each pick."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 6, (600, 4)).astype(np.float32)  # a grid: many equal distances too
    x = np.concatenate([base, base])
    np.save(tmp_path / "x.npy", x)
    for ties in ("last", "first"):
        ref, _ = fps_reference(x, 150, 5, ties=ties)
        res = distributed_fps(_sources(str(tmp_path / "x.npy"), len(x), 333), 150, start=5, top=5, ties=ties)
        np.testing.assert_array_equal(res.indices, ref)


def test_start_in_a_later_shard_and_rows_of_a_candidate_subset(points):
    path, x = points
    rows = np.sort(np.random.default_rng(1).choice(len(x), 9_000, replace=False))
    parts = np.array_split(rows, 4)
    sources = [
        ShardSource(functools.partial(_take, x, p), int(p[0]), len(p), f"p{i}", rows=p) for i, p in enumerate(parts)
    ]
    start = int(parts[2][17])
    res = distributed_fps(sources, 120, start=start, top=50)
    local = fps(x[rows], 120, int(np.searchsorted(rows, start)))
    np.testing.assert_array_equal(res.indices, rows[local.indices])


def test_seeds_are_applied_first_and_never_picked(points):
    path, x = points
    n = 12_000
    seeds = x[[5, 11_000]]
    res = distributed_fps(_sources(path, n, 5_000), 50, seeds=seeds, top=16)
    exact = fps(np.concatenate([seeds, x[:n]]), 52, start_idx=[0, 1])
    np.testing.assert_array_equal(res.indices, exact.indices[2:] - 2)
    assert not {5, 11_000} & set(res.indices.tolist())


def test_shards_as_dask_actors_on_worker_processes_give_the_same_picks(points):
    distributed = pytest.importorskip("distributed")
    path, x = points
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        res = distributed_fps(_sources(path, len(x), 8_000), 300, start=3, client=client, top=128)
        where = client.run(lambda: 1)
    assert len(where) == 2
    np.testing.assert_array_equal(res.indices, fps(x, 300, 3).indices)
    assert res.task_cpu_seconds > 0


def test_shard_reports_its_farthest_rows_and_the_key_of_the_next(points):
    path, x = points
    shard = ShardFPS(_sources(path, 1000, 1000)[0])
    rep = shard.step(x[[0]], 10)
    d = ((x[:1000].astype(np.float64) - x[0]) ** 2).sum(axis=1)
    order = np.argsort(-d, kind="stable")
    assert set(rep.rows.tolist()) == set(order[:10].tolist())
    assert rep.bound[1] == order[10] and rep.bound[0] == pytest.approx(d[order[10]], rel=1e-5)
    np.testing.assert_allclose(rep.sqdist, d[rep.rows], rtol=1e-5)
    assert shard.vector(999) is not None and shard.vector(1000) is None


def test_errors_name_the_problem(points):
    path, x = points
    with pytest.raises(ValueError, match="k"):
        distributed_fps(_sources(path, 1000, 500), 2000)
    with pytest.raises(ValueError, match="start row 5000 is in none of the shards"):
        distributed_fps(_sources(path, 1000, 500), 10, start=5000)
    with pytest.raises(ValueError, match="top must be >= 1"):
        distributed_fps(_sources(path, 1000, 500), 10, top=0)


def test_progress_lines_name_round_picks_and_radius(points):
    path, x = points
    lines: list[str] = []
    distributed_fps(_sources(path, 5_000, 2_500), 60, start=3, log=lines.append)
    assert lines and lines[-1].startswith("exact distributed FPS: round ")
    assert "60/60 picks, radius " in lines[-1]
