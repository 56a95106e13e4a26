"""Fast exact FPS must pick exactly what the plain loop (and fpsample) picks."""

from __future__ import annotations

import numpy as np
import pytest

from omni_data.select._fps_reference import fps_reference
from omni_data.select.fps import fps


def _clustered(n: int, d: int, clusters: int, seed: int, intrinsic: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 10, (clusters, d))
    label = rng.integers(0, clusters, n)
    basis = rng.standard_normal((clusters, d, intrinsic))
    z = rng.standard_normal((n, intrinsic)) * rng.uniform(0.2, 1.5, clusters)[label, None]
    x = centres[label] + np.einsum("ndm,nm->nd", basis[label], z) + 0.02 * rng.standard_normal((n, d))
    return x.astype(np.float32)


def test_reference_on_hand_worked_example():
    # 1-d points 0, 1, 3, 7; start at 0: squared distances 0,1,9,49 -> 7 (49);
    # then min with (x-7)^2 = 0,1,9,0 -> 3 (9); then 1 (1).
    x = np.array([[0.0], [1.0], [3.0], [7.0]], dtype=np.float32)
    idx, d2 = fps_reference(x, 4, start_idx=0)
    assert idx.tolist() == [0, 3, 2, 1]
    assert d2[0] == np.inf and d2[1:].tolist() == [49.0, 9.0, 1.0]
    fast = fps(x, 4, 0)
    assert fast.indices.tolist() == [0, 3, 2, 1] and fast.sqdist[1:].tolist() == [49.0, 9.0, 1.0]


def test_tie_rules_on_duplicates():
    # points 1 and 2 (and 4) are equally far from 0: fpsample's >= takes the last, argmax the first
    x = np.array([[0.0], [1.0], [1.0], [0.0], [1.0]], dtype=np.float32)
    assert fps(x, 2, 0, ties="last").indices.tolist() == [0, 4]
    assert fps(x, 2, 0, ties="first").indices.tolist() == [0, 1]
    assert fps_reference(x, 2, 0, ties="first")[0].tolist() == [0, 1]


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("ties", ["last", "first"])
def test_same_picks_as_reference_on_clustered_and_random(engine, ties):
    rng = np.random.default_rng(3)
    cases = [
        (_clustered(6000, 16, 12, seed=1), 150, 5),
        (rng.standard_normal((3000, 5)).astype(np.float32), 300, 0),
        # rounded values: many exact distance ties
        (np.round(rng.standard_normal((2000, 3)), 1).astype(np.float32), 400, 17),
    ]
    for x, k, start in cases:
        ref_i, ref_d = fps_reference(x, k, start, ties)
        res = fps(x, k, start, ties, engine=engine)
        np.testing.assert_array_equal(res.indices, ref_i)
        np.testing.assert_array_equal(res.sqdist, ref_d)
        assert res.distances_computed < len(x) * k


@pytest.mark.parametrize("threads", [1, 2])
def test_start_list_and_threads(threads):
    x = _clustered(5000, 8, 6, seed=2)
    starts = [10, 4000, 77]
    ref_i, ref_d = fps_reference(x, 60, starts)
    res = fps(x, 60, starts, threads=threads)
    assert res.indices[:3].tolist() == starts
    np.testing.assert_array_equal(res.indices, ref_i)
    np.testing.assert_array_equal(res.sqdist, ref_d)


def test_matches_fpsample_bit_for_bit(optional):
    fpsample = optional("fpsample", "test")
    x = _clustered(8000, 32, 10, seed=4)
    want = fpsample.fps_sampling(x, 200, start_idx=123)
    np.testing.assert_array_equal(fps(x, 200, 123).indices, want.astype(np.int64))
    want = fpsample.fps_sampling(x, 50, start_idx=[5, 6000])
    np.testing.assert_array_equal(fps(x, 50, [5, 6000]).indices, want.astype(np.int64))


def test_same_picks_on_real_descriptors(real_descriptors):
    x = real_descriptors
    k = len(x) // 2
    for start in (0, len(x) - 1):
        ref_i, ref_d = fps_reference(x, k, start)
        res = fps(x, k, start)
        np.testing.assert_array_equal(res.indices, ref_i)
        np.testing.assert_array_equal(res.sqdist, ref_d)
        assert res.indices.tolist() == fps(x, k, start, engine="numpy").indices.tolist()


def test_bad_input_is_an_error():
    x = np.zeros((10, 3), dtype=np.float32)
    x[7, 1] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        fps(x, 2)
    with pytest.raises(ValueError, match="k <= n"):
        fps(np.zeros((3, 2)), 5)
    with pytest.raises(ValueError, match="out of range"):
        fps(np.zeros((3, 2)), 2, start_idx=9)
    with pytest.raises(ValueError, match="ties"):
        fps(np.zeros((3, 2)), 2, ties="middle")


def test_block_order_and_balls_hold_every_point():
    from omni_data.select._fps_numba import block_balls
    from omni_data.select.fps import _block_order, _super_blocks

    x = _clustered(20_000, 12, 8, seed=9)
    order, bstart = _block_order(x, block=64, sketch=4)
    assert np.array_equal(np.sort(order), np.arange(len(x)))
    assert bstart[0] == 0 and bstart[-1] == len(x) and np.all(np.diff(bstart) <= 64)
    xs = x[order]
    cen, rad, a = block_balls(xs, bstart)
    block_of = np.repeat(np.arange(len(rad)), np.diff(bstart))
    true_a = np.linalg.norm(xs.astype(np.float64) - cen[block_of], axis=1)
    np.testing.assert_allclose(a, true_a, rtol=1e-12)
    assert np.all(true_a <= rad[block_of])
    sstart, scen, srad = _super_blocks(cen, rad, np.diff(bstart))
    sb_of_block = np.repeat(np.arange(len(srad)), np.diff(sstart))
    reach = np.linalg.norm(xs.astype(np.float64) - scen[sb_of_block[block_of]], axis=1)
    assert np.all(reach <= srad[sb_of_block[block_of]])


def test_tiny_and_degenerate_inputs_match_reference():
    rng = np.random.default_rng(11)
    for x, k in [
        (np.ones((1, 3), np.float32), 1),
        (np.zeros((2, 5), np.float32), 2),
        (np.ones((300, 2), np.float32), 3),
        (rng.random((300, 1)).astype(np.float32), 50),
    ]:
        ref_i, ref_d = fps_reference(x, k, 0)
        res = fps(x, k, 0)
        np.testing.assert_array_equal(res.indices, ref_i)
        np.testing.assert_array_equal(res.sqdist, ref_d)


def _plain_loop(x: np.ndarray, k: int, start: int, ties: str) -> tuple[list[int], list[float]]:
    """An FPS loop written here, independent of the package: float32 sums in dimension order."""
    x = np.asarray(x, dtype=np.float32)
    mind = np.full(len(x), np.inf, dtype=np.float32)
    picks, dists = [start], [float("inf")]
    while True:
        c = x[picks[-1]]
        acc = np.zeros(len(x), dtype=np.float32)
        for j in range(x.shape[1]):
            acc += (x[:, j] - c[j]) * (x[:, j] - c[j])
        mind = np.minimum(mind, acc)
        if len(picks) == k:
            return picks, dists
        top = np.flatnonzero(mind == mind.max())
        picks.append(int(top[-1] if ties == "last" else top[0]))
        dists.append(float(mind[picks[-1]]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ties", ["last", "first"])
def test_independent_loop_with_ties_and_k_close_to_n(dtype, ties):
    rng = np.random.default_rng(21)
    grid = rng.integers(0, 4, (700, 3)).astype(dtype)  # 64 distinct points: ties and zero distances
    clustered = _clustered(900, 6, 5, seed=22).astype(dtype)
    for x, k, start in [(grid, 699, 3), (grid, 700, 0), (clustered, 899, 450), (clustered, 900, 0)]:
        want_i, want_d = _plain_loop(x, k, start, ties)
        for threads in (1, 2):
            res = fps(x, k, start, ties, threads=threads)
            assert res.indices.tolist() == want_i
            assert res.sqdist.tolist() == want_d


@pytest.mark.parametrize("threads", [1, 2])
def test_pick_cost_does_not_loop_over_earlier_picks(threads):
    # The old kernel measured the new pick against all t earlier picks: k(k-1)/2 distances.
    x = _clustered(30_000, 8, 12, seed=5)
    k = 3000
    res = fps(x, k, 7, threads=threads)
    ref_i, ref_d = fps_reference(x, k, 7)
    np.testing.assert_array_equal(res.indices, ref_i)
    np.testing.assert_array_equal(res.sqdist, ref_d)
    assert 0 < res.pick_distances < k * (k - 1) // 2 // 8  # measured: ~1/13 here


def test_progress_reports_picks_and_radius():
    x = _clustered(20_000, 8, 6, seed=6)
    seen: list[tuple[int, float]] = []
    res = fps(x, 2000, 0, progress=lambda done, d2: seen.append((done, d2)), progress_every=1e-3)
    assert seen[-1] == (2000, float(res.sqdist[-1]))
    done = [s[0] for s in seen]
    assert done == sorted(done) and 1 <= done[0] <= 2000
    picked_d = set(res.sqdist.tolist())
    for _, d2 in seen:  # every report is the distance of a real pick (read while it runs)
        assert d2 in picked_d


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_return_mind_is_every_points_distance_to_the_picks(engine):
    x = _clustered(4000, 10, 7, seed=8)
    res = fps(x, 500, 9, engine=engine, return_mind=True)
    mind = np.full(len(x), np.inf, dtype=np.float32)
    for i in res.indices:  # independent: float32 sums in dimension order over all picks
        acc = np.zeros(len(x), dtype=np.float32)
        for j in range(x.shape[1]):
            acc += (x[:, j] - x[i, j]) * (x[:, j] - x[i, j])
        mind = np.minimum(mind, acc)
    np.testing.assert_array_equal(res.mind, mind)
    assert fps(x, 500, 9, engine=engine).mind is None
