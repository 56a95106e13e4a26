"""Cross-task shifts between a source task and bridge records of the same structures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.calculators.lj import LennardJones

from omni_data.harmonize.pairs import find_pairs, fit_pairs, fit_shift
from omni_data.schema import Record
from tests.harmonize.conftest import emt_alloys, make_store


def _bridge(src: Record, energy: float, task: str, k: int) -> Record:
    return Record(
        numbers=src.numbers,
        positions=src.positions,
        cell=src.cell,
        pbc=src.pbc,
        energy=energy,
        id=f"bridge:{k}",
        dataset="bridge",
        task=task,
        metadata={"source_id": src.id, "source_task": src.task},
    )


def test_known_shift_recovered_from_stores(tmp_path, alloys):
    true = {29: 0.5, 28: -0.25, 13: 1.0, 79: 0.0}
    bridge = [_bridge(r, r.energy + sum(true[int(z)] for z in r.numbers), "hi", k) for k, r in enumerate(alloys[:25])]
    src = make_store(tmp_path / "src", {"a": alloys})
    br = make_store(tmp_path / "br", {"b": bridge})
    (fit,) = fit_pairs([br, src])
    assert (fit.source_task, fit.task, fit.n_pairs) == ("emt", "hi", 25)
    for z, v in true.items():
        assert fit.delta[z] == pytest.approx(v, abs=1e-9)
    assert fit.rms_per_atom_after == pytest.approx(0.0, abs=1e-9)
    shifts = [sum(true[int(z)] for z in r.numbers) / len(r.numbers) for r in alloys[:25]]
    assert fit.rms_per_atom_before == pytest.approx(math.sqrt(np.mean(np.square(shifts))))


def test_two_real_calculators_residual_matches_lstsq():
    # Cu structures labelled by EMT (source) and Lennard-Jones (bridge): not a linear shift
    recs = emt_alloys(30, seed=4)
    for r in recs:
        r.numbers = np.full_like(r.numbers, 29)
    from ase import Atoms
    from ase.calculators.emt import EMT

    nums, e_emt, e_lj = [], [], []
    for r in recs:
        atoms = Atoms(numbers=r.numbers, positions=r.positions, cell=r.cell, pbc=True)
        atoms.calc = EMT()
        e_emt.append(atoms.get_potential_energy())
        atoms.calc = LennardJones(sigma=2.3, epsilon=0.4, rc=6.0)
        e_lj.append(atoms.get_potential_energy())
        nums.append(r.numbers)
    fit = fit_shift("emt", "lj", nums, e_emt, e_lj)
    n = np.array([len(z) for z in nums], float)
    d = np.array(e_lj) - np.array(e_emt)
    delta = np.sum(d * n) / np.sum(n * n)  # one element: closed form
    assert fit.delta[29] == pytest.approx(delta, rel=1e-9)
    assert fit.rms_per_atom_after == pytest.approx(math.sqrt(np.mean(((d - delta * n) / n) ** 2)))
    assert fit.rms_per_atom_after < fit.rms_per_atom_before


def test_missing_source_and_wrong_composition_are_errors(tmp_path, alloys):
    orphan = _bridge(alloys[0], -1.0, "hi", 0)
    orphan.metadata["source_id"] = "alloys:nope"
    br = make_store(tmp_path / "br", {"b": [orphan]})
    src = make_store(tmp_path / "src", {"a": alloys[:3]})
    with pytest.raises(KeyError, match="alloys:nope"):
        find_pairs([br, src])
    wrong = _bridge(alloys[1], -1.0, "hi", 1)
    wrong.numbers = np.full_like(alloys[1].numbers, 13)
    br2 = make_store(tmp_path / "br2", {"b": [wrong]})
    with pytest.raises(ValueError, match="composition"):
        find_pairs([br2, src])
