"""Covering radius and per-task coverage against brute-force numbers."""

from __future__ import annotations

import json

import numpy as np

from omni_data.select.coverage import coverage_report, nearest_sqdist


def test_nearest_sqdist_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 7)).astype(np.float32)
    p = x[[3, 100, 250]]
    brute = ((x[:, None, :].astype(np.float64) - p[None].astype(np.float64)) ** 2).sum(-1).min(1)
    np.testing.assert_allclose(nearest_sqdist(x, p, block=64), brute, rtol=1e-9, atol=1e-9)


def test_report_by_hand():
    # 1-d: task a at 0,1,2; task b at 10, 14; picks rows 0 and 3 (x=0, x=10)
    x = np.array([[0.0], [1.0], [2.0], [10.0], [14.0]], dtype=np.float32)
    tasks = np.array(["a", "a", "a", "b", "b"])
    rep = coverage_report(x, tasks, np.array([0, 3]))
    assert rep.covering_radius == 4.0
    assert rep.tasks["a"].covering_radius == 2.0 and rep.tasks["a"].picks == 1
    assert rep.tasks["b"].covering_radius == 4.0 and rep.tasks["b"].n == 2
    assert rep.mean_distance == (0 + 1 + 2 + 0 + 4) / 5
    # a seed at 14 covers the far b point
    rep2 = coverage_report(x, tasks, np.array([0, 3]), seeds=np.array([[14.0]]))
    assert rep2.covering_radius == 2.0 and rep2.n_seeds == 1
    assert json.loads(rep.to_json())["tasks"]["b"]["covering_radius"] == 4.0
    assert "covering radius 4" in rep.to_text()


def _float32_mind(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Independent loop: float32 squared distances summed in dimension order, running min."""
    mind = np.full(len(x), np.inf, dtype=np.float32)
    for c in centres.astype(np.float32):
        acc = np.zeros(len(x), dtype=np.float32)
        for j in range(x.shape[1]):
            acc += (x[:, j] - c[j]) * (x[:, j] - c[j])
        mind = np.minimum(mind, acc)
    return mind


def test_covering_distances_are_the_reference_values():
    from omni_data.select.coverage import covering_distances

    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3000, 9)) + 4 * rng.integers(0, 5, (3000, 1))).astype(np.float32)
    centres = x[rng.choice(3000, 400, replace=False)]
    got = covering_distances(x, centres, threads=2)
    want = np.sqrt(_float32_mind(x, centres).astype(np.float64))
    np.testing.assert_array_equal(got, want)
    brute = np.sqrt(nearest_sqdist(x, centres))
    np.testing.assert_allclose(got, brute, rtol=1e-5, atol=1e-5)


def test_shard_stats_merge_to_the_single_report():
    from omni_data.select.coverage import report_from_stats, shard_stats

    rng = np.random.default_rng(2)
    x = rng.standard_normal((900, 4)).astype(np.float32)
    tasks = np.array(["a", "b", "c"])[rng.integers(0, 3, 900)]
    picked = np.array([5, 300, 700, 899])
    whole = coverage_report(x, tasks, picked)
    parts = [shard_stats(lambda lo=lo: x[lo : lo + 300], tasks[lo : lo + 300], x[picked]) for lo in (0, 300, 600)]
    merged = report_from_stats(parts, tasks[picked])
    assert merged.covering_radius == whole.covering_radius
    np.testing.assert_allclose(merged.mean_distance, whole.mean_distance, rtol=1e-12)
    for t in "abc":
        assert merged.tasks[t].covering_radius == whole.tasks[t].covering_radius
        assert merged.tasks[t].n == whole.tasks[t].n == int((tasks == t).sum())
        assert merged.tasks[t].picks == whole.tasks[t].picks
