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
