"""molecules: box geometry, spin tags and the charge policy, checked against numbers worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from omni_data.recompute.molecules import Refused, box_molecule, is_molecule, spin_incar
from omni_data.recompute.protocols import MoleculePolicy
from omni_data.schema import Record


def test_box_by_hand(methane_record: Record) -> None:
    pos = methane_record.positions
    lo, hi = pos.min(0), pos.max(0)
    extent = hi - lo
    boxed = box_molecule(methane_record, MoleculePolicy(vacuum=7.5, cubic=False), potcars_available=False)
    assert np.allclose(np.diag(boxed.cell), extent + 15.0) and np.count_nonzero(boxed.cell) == 3
    assert np.allclose(boxed.positions.min(0), 7.5) and np.allclose(boxed.positions.max(0), extent + 7.5)
    assert np.allclose(boxed.positions - boxed.positions[0], pos - pos[0])  # a pure translation
    cubic = box_molecule(methane_record, MoleculePolicy(vacuum=10.0), potcars_available=False)
    assert np.allclose(np.diag(cubic.cell), extent.max() + 20.0)
    assert cubic.incar == {"ISPIN": 1}  # singlet, policy incar empty here
    assert is_molecule(methane_record)


def test_spin_tags_by_hand(methane_record: Record) -> None:
    # CH4 has 6 + 4 = 10 electrons: singlet and triplet are possible, doublet is not
    base = dict(numbers=methane_record.numbers, positions=methane_record.positions, dataset="m", task="m")
    assert spin_incar(Record(id="m:1", spin=1, **base)) == {"ISPIN": 1}
    assert spin_incar(Record(id="m:3", spin=3, **base)) == {"ISPIN": 2, "NUPDOWN": 2}
    assert spin_incar(Record(id="m:none", **base)) == {}
    with pytest.raises(Refused, match="multiplicity 2 impossible with 10 electrons"):
        spin_incar(Record(id="m:2", spin=2, **base))
    # the cation has 9 electrons: a doublet
    assert spin_incar(Record(id="m:+", spin=2, charge=1.0, **base)) == {"ISPIN": 2, "NUPDOWN": 1}


def test_charge_policy(methane_record: Record) -> None:
    cation = Record(
        numbers=methane_record.numbers,
        positions=methane_record.positions,
        id="m:+",
        dataset="m",
        task="m",
        charge=1.0,
        spin=2,
    )
    with pytest.raises(Refused, match="charged: refuse"):
        box_molecule(cation, MoleculePolicy(), potcars_available=True)
    with pytest.raises(Refused, match="PMG_VASP_PSP_DIR"):
        box_molecule(cation, MoleculePolicy(charged="nelect"), potcars_available=False)
    boxed = box_molecule(cation, MoleculePolicy(charged="nelect"), potcars_available=True)
    assert boxed.charge == 1.0 and boxed.incar["LDIPOL"] is True and boxed.incar["IDIPOL"] == 4
    assert boxed.incar["DIPOL"] == [0.5, 0.5, 0.5]
    with pytest.raises(Refused, match="does not compute non-periodic"):
        box_molecule(methane_record, MoleculePolicy(policy="refuse"), potcars_available=True)
