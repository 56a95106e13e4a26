"""The torch engine (CPU torch here; no GPU in this environment) picks what the numba kernel
picks for the same dtype, and what the independent plain loop picks for float32."""

from __future__ import annotations

import numpy as np
import pytest

from omni_data.select._fps_reference import fps_reference
from omni_data.select.fps import fps

from .test_fps import _clustered


@pytest.fixture
def torch(optional):
    return optional("torch", "model")


@pytest.mark.parametrize("ties", ["last", "first"])
def test_torch_float32_matches_reference_and_numba(torch, ties):
    rng = np.random.default_rng(4)
    cases = [
        (_clustered(3000, 16, 8, seed=3), 200, 11, 1 << 22),
        (np.round(rng.standard_normal((1500, 3)), 1).astype(np.float32), 300, 0, 257),
        (rng.integers(0, 3, (400, 2)).astype(np.float64), 400, 5, 64),
    ]  # ties, k = n
    for x, k, start, chunk in cases:
        ref_i, ref_d = fps_reference(x, k, start, ties)
        from omni_data.select.fps_torch import fps_torch

        got = fps_torch(np.ascontiguousarray(x, np.float32), k, [start], ties == "last", chunk=chunk, final=True)
        np.testing.assert_array_equal(got.indices, ref_i)
        np.testing.assert_array_equal(got.sqdist, ref_d)
        kernel = fps(x, k, start, ties, engine="numba", return_mind=True)
        np.testing.assert_array_equal(got.mind, kernel.mind)
        via = fps(x, k, start, ties, engine="torch")
        np.testing.assert_array_equal(via.indices, ref_i)


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
def test_torch_half_storage_matches_numba_on_rounded_points(torch, storage):
    from omni_data.select.fps_torch import rounded

    x = _clustered(4000, 24, 10, seed=7)
    res = fps(x, 300, [3, 2000], engine="torch", storage=storage)
    want = fps(rounded(x, storage), 300, [3, 2000], engine="numba")
    np.testing.assert_array_equal(res.indices, want.indices)
    np.testing.assert_array_equal(res.sqdist, want.sqdist)
    assert res.indices.tolist() != fps(x, 300, [3, 2000]).indices.tolist()  # rounding mattered


def test_torch_engine_errors(torch):
    x = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match="storage"):
        fps(x, 2, engine="torch", storage="int8")
    with pytest.raises(ValueError, match="engine='torch'"):
        fps(x, 2, device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            fps(x, 2, engine="torch", device="cuda")
