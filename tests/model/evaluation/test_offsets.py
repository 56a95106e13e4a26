"""Per-element offset fit: exact recovery, a hand-computed residual, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from omni_model.evaluation.offsets import composition, fit_offsets, mae_rmse, remove_offsets

H, C, O = 1, 6, 8


def test_errors_that_are_per_element_constants_vanish_after_offsets():
    rng = np.random.default_rng(3)
    elements = [H, C, O]
    mu = np.array([0.37, -2.1, 5.3])  # eV per atom: a pure energy-zero difference
    calib = rng.integers(0, 6, size=(20, 3)) + np.array([1, 0, 0])
    test = rng.integers(0, 6, size=(50, 3)) + np.array([0, 1, 0])
    fit = fit_offsets(calib @ mu, calib, elements)
    assert fit.n_structures == 20 and fit.rank == 3
    assert [fit.offsets[z] for z in elements] == pytest.approx(mu.tolist(), abs=1e-10)
    raw = test @ mu / test.sum(axis=1)
    aligned = remove_offsets(test @ mu, test, elements, fit) / test.sum(axis=1)
    assert mae_rmse(raw)[0] > 0.5
    assert np.abs(aligned).max() < 1e-10


def test_known_residual_worked_out_by_hand():
    # calibration per-atom residuals: H2 0.1, O2 -0.2, H2O 0.1 (total 0.3). Normal equations
    # [[13, 2], [2, 10]] mu = [1.5, -1.5]  ->  mu_H = 1/7, mu_O = -5/28.
    elements = [H, O]
    counts = np.array([[2, 0], [0, 2], [2, 1]])
    fit = fit_offsets(np.array([0.2, -0.4, 0.3]), counts, elements)
    assert fit.offsets[H] == pytest.approx(1 / 7, abs=1e-12)
    assert fit.offsets[O] == pytest.approx(-5 / 28, abs=1e-12)
    # test: OH with total residual 0.5 eV -> 0.5 - (1/7 - 5/28) = 15/28 eV, 15/56 eV/atom
    left = remove_offsets(np.array([0.5]), np.array([[1, 1]]), elements, fit)
    assert left[0] == pytest.approx(15 / 28, abs=1e-12)
    assert mae_rmse(left / 2) == pytest.approx((15 / 56, 15 / 56), abs=1e-12)


def test_unlabelled_structures_are_ignored_and_absent_elements_get_no_offset():
    elements = [H, C, O]
    counts = np.array([[4, 1, 0], [2, 2, 0], [0, 1, 2]])
    fit = fit_offsets(np.array([4.0, 2.0, np.nan]), counts, elements)
    assert fit.n_structures == 2
    assert set(fit.offsets) == {H, C}  # O only occurs in the unlabelled structure
    assert fit.offsets[H] == pytest.approx(1.0) and fit.offsets[C] == pytest.approx(0.0, abs=1e-12)
    assert fit.uncalibrated([H, O, 7]) == [7, O]
    assert remove_offsets(np.array([3.0]), np.array([[1, 0, 1]]), elements, fit)[0] == pytest.approx(2.0)


def test_composition_counts_and_unknown_element():
    np.testing.assert_array_equal(composition([np.array([8, 1, 1]), np.array([6])], [1, 6, 8]), [[2, 0, 1], [0, 1, 0]])
    with pytest.raises(ValueError, match="Z=7"):
        composition([np.array([7])], [1, 6, 8])
    assert all(np.isnan(mae_rmse(np.array([np.nan]))))
