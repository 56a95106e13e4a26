"""Per-task sampling probabilities (worked by hand) and the sampler's empirical frequencies."""

from __future__ import annotations

import numpy as np
import pytest

from omni_model.data.sampler import TaskSampler, task_probabilities

COUNTS = {"mpa": 300, "omat": 100, "bridge": 25}


def test_proportional():
    p = task_probabilities(COUNTS)
    assert p == pytest.approx({"mpa": 300 / 425, "omat": 100 / 425, "bridge": 25 / 425})


def test_temperature_two_uses_square_roots():
    p = task_probabilities(COUNTS, "temperature", 2.0)
    z = np.sqrt(300) + 10 + 5
    assert p == pytest.approx({"mpa": np.sqrt(300) / z, "omat": 10 / z, "bridge": 5 / z})


def test_explicit_weights_and_bridge_share():
    p = task_probabilities(COUNTS, "weights", weights={"mpa": 1, "omat": 3}, bridge_task="bridge", bridge_weight=0.2)
    assert p == pytest.approx({"mpa": 0.8 * 0.25, "omat": 0.8 * 0.75, "bridge": 0.2})
    with pytest.raises(ValueError, match="unknown tasks"):
        task_probabilities(COUNTS, "weights", weights={"spice": 1})


def test_sampler_frequencies_and_resume():
    task_of = np.array([0] * 30 + [1] * 10 + [2] * 5)
    probs = {"a": 0.5, "b": 0.25, "c": 0.25}
    s = TaskSampler(task_of, ["a", "b", "c"], probs, batch_size=50, seed=1)
    draws = np.concatenate([s.next_batch() for _ in range(80)])
    freq = np.bincount(task_of[draws], minlength=3) / len(draws)
    np.testing.assert_allclose(freq, [0.5, 0.25, 0.25], atol=0.02)
    state = s.state_dict()
    nxt = [s.next_batch() for _ in range(3)]
    s2 = TaskSampler(task_of, ["a", "b", "c"], probs, batch_size=50, seed=99)
    s2.load_state_dict(state)
    for a, b in zip(nxt, [s2.next_batch() for _ in range(3)]):
        np.testing.assert_array_equal(a, b)


def test_ranks_take_disjoint_slices_of_one_global_batch():
    task_of = np.zeros(100, dtype=int)
    r0 = TaskSampler(task_of, ["a"], {"a": 1.0}, batch_size=4, seed=3, world_size=2)
    r1 = TaskSampler(task_of, ["a"], {"a": 1.0}, batch_size=4, seed=3, world_size=2)
    one = TaskSampler(task_of, ["a"], {"a": 1.0}, batch_size=8, seed=3, world_size=1)
    np.testing.assert_array_equal(np.concatenate([r0.next_batch(0), r1.next_batch(1)]), one.next_batch(0))
