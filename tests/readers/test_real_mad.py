"""MAD: a real extended-XYZ file written by the MAD authors (lab-cosmo/pet-mad tests/resources, BSD-3-Clause;
see tests/data/README.md), read with the `mad` manifest's reader options.

The file is the reduced MAD benchmark: 70 frames, 10 each from MAD, MPtrj, MatBench, Alexandria, OC2020, SPICE
and MD22, all recomputed with MAD's DFT settings; the header keys (energy, forces, stress, subset, pbc) are the
ones the MAD release uses. Values below were read by eye in the file.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from omni_data.manifest import load_manifest
from omni_data.readers import get_reader
from omni_data.schema import Record

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "mad" / "mad-bench-mad-reduced.xyz"


def _records() -> list:
    m = load_manifest("mad")
    reader = get_reader(m.format)
    return [r for p in reader.partitions(SAMPLE, 1000) for r in reader.read(p, m.read_options())]


def test_real_mad_file_reads_every_frame_with_its_labels():
    recs = _records()
    assert len(recs) == 70 and all(isinstance(r, Record) for r in recs)
    assert sum(len(r.numbers) for r in recs) == 2406
    counts = collections.Counter(r.metadata["info"]["dataset"] for r in recs)
    assert counts == {k: 10 for k in ("MAD", "MPtrj", "MatBench", "Alexandria", "OC2020", "SPICE", "MD22")}
    first = recs[0]  # frame 1: 2D B/S sheet, subset=2d, energy=-142.95752348476708
    assert first.id == "mad:mad-bench-mad-reduced.xyz:0" and first.task == "pet_mad"
    assert first.energy == -142.95752348476708 and first.metadata["info"]["subset"] == "2d"
    assert first.numbers[0] == 5 and first.numbers[6] == 16  # B ... S
    np.testing.assert_allclose(first.forces[0], [-0.02183318, 0.01469023, 0.03065724])
    assert recs[-1].energy == -253.79093837205073


def test_real_mad_stress_comes_through_in_ase_sign_and_units():
    """Frame index=349 (subset=ideal) carries stress="-0.000614... 0 0 0 0.000724... 0 0 0 0.000204..." (eV/Å³)."""
    recs = _records()
    (with_stress,) = [r for r in recs if r.stress is not None]
    assert with_stress.metadata["info"] == {"subset": "ideal", "dataset": "MAD", "index": 349}
    assert with_stress.energy == pytest.approx(-243.5393900665149, abs=0)
    np.testing.assert_allclose(
        with_stress.stress,
        [-0.0006141920987092253, 0.0007242830578675293, 0.00020415251217215802, 0.0, 0.0, 0.0],
        rtol=1e-12,
    )
