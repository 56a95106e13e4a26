"""vesin neighbour lists against ASE's, and batching offsets/masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import neighbor_list

from omni_model.data.graph import collate, graph_from_atoms, species_table


def _pairs_with_vectors(atoms, cutoff):
    i, j, d = neighbor_list("ijD", atoms, cutoff)
    return sorted(zip(i.tolist(), j.tolist(), np.round(d, 6).tolist()))


@pytest.mark.parametrize(
    "make",
    [
        lambda: bulk("Cu", "fcc", a=3.6) * (1, 1, 1),  # primitive cell smaller than the cutoff
        lambda: fcc111("Pt", size=(2, 2, 2), vacuum=5.0),  # mixed pbc (slab)
        lambda: molecule("C6H6"),
    ],
)
def test_edges_match_ase_neighbor_list(make):
    atoms = make()
    atoms.rattle(0.02, seed=1)
    cutoff = 4.0
    g = graph_from_atoms(atoms, cutoff, species_table(sorted(set(atoms.numbers))))
    vec = atoms.positions[g.src] - atoms.positions[g.dst] + g.shift @ atoms.cell.array
    ours = sorted(zip(g.dst.tolist(), g.src.tolist(), np.round(vec, 6).tolist()))
    assert ours == _pairs_with_vectors(atoms, cutoff)


def test_collate_offsets_and_masks():
    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    m = molecule("H2O")
    table = species_table([1, 8, 29])
    ga = graph_from_atoms(a, 3.0, table)
    gm = graph_from_atoms(m, 3.0, table)
    ga.energy, ga.forces, ga.stress = -10.0, np.ones((4, 3)), np.arange(6.0)
    gm.task = 1  # molecule: no labels at all
    b = collate([ga, gm], dtype=torch.float64)
    assert b.num_graphs == 2 and b.n_atoms.tolist() == [4, 3]
    assert b.batch.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert int(b.src[len(ga.src) :].min()) >= 4 and int(b.src[: len(ga.src)].max()) < 4
    assert b.energy_mask.tolist() == [True, False]
    assert b.forces_mask.tolist() == [True] * 4 + [False] * 3
    assert b.stress_mask.tolist() == [True, False]
    assert b.task.tolist() == [0, 1]
    assert b.species.tolist() == [2, 2, 2, 2, 1, 0, 0]
