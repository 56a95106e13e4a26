"""The demo report: mean ± std over seeds, raw and offset-aligned columns side by side."""

from __future__ import annotations

import pytest

from omni_model.demo import report


def _row(e: float, off: float | None, f: float, kind: str = "cross-domain") -> dict:
    return {
        "kind": kind,
        "head": "crystals",
        "data": "molecules test (GFN1-xTB)",
        "n": 120,
        "n_calibration": 40,
        "energy_mae": e,
        "energy_mae_offset": off,
        "forces_mae": f,
        "stress_mae": None,
    }


def test_aggregate_seeds_gives_mean_and_sample_std():
    rows = report.aggregate_seeds([[_row(0.30, 0.10, 1.0)], [_row(0.50, 0.14, 1.2)], [_row(0.40, 0.12, 1.4)]])
    (row,) = rows
    assert row["n_seeds"] == 3
    assert row["energy_mae"] == pytest.approx(0.40) and row["energy_mae_std"] == pytest.approx(0.10)
    assert row["energy_mae_offset"] == pytest.approx(0.12) and row["energy_mae_offset_std"] == pytest.approx(0.02)
    assert row["forces_mae_std"] == pytest.approx(0.2)
    assert "stress_mae_std" not in row  # no values, no spread
    (one,) = report.aggregate_seeds([[_row(0.3, None, 1.0)]])
    assert one["energy_mae_std"] == 0.0 and one["n_seeds"] == 1


def test_table_shows_raw_and_offset_aligned_side_by_side_with_spread():
    rows = report.aggregate_seeds([[_row(0.30, 0.10, 1.0)], [_row(0.50, 0.14, 1.2)]])
    metrics = {"plain": {"rows": rows, "loss": [[1, 2.0], [2, 1.0]]}}
    text = report.format_table(metrics)
    header, _, line = text.splitlines()[:3]
    assert "E raw meV/atom" in header and "E offset-aligned meV/atom" in header
    assert "400.0 ± 141" in line and "120.0 ± 28.3" in line and " 120 " in line and " 40 " in line
    md = report.format_table(metrics, markdown=True)
    assert md.splitlines()[0].startswith("| kind | head | data | n test | n cal |")
