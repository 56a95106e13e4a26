"""Atom graphs: vesin neighbour lists for one structure, and batching by concatenation.

A ``Graph`` holds numpy arrays for one structure (built once and cached); ``collate`` turns a
list of them into a ``Batch`` of torch tensors with node/edge indices offset per graph.
Edges run ``src -> dst``; the edge vector is ``x[src] - x[dst] + shift @ cell`` (neighbour minus
centre), the convention vesin's ``i, j, S`` follow with i = dst, j = src.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["Graph", "species_table", "neighbours", "build_graph", "graph_from_atoms", "Batch", "collate"]

MAX_Z = 119


@dataclass
class Graph:
    """One structure as a graph with labels (NaN/None = missing, never 0)."""

    species: np.ndarray  # (n,) int64 index into the model's element list
    positions: np.ndarray  # (n, 3) float64 Å
    cell: np.ndarray  # (3, 3) float64 Å, zeros when not periodic
    pbc: np.ndarray  # (3,) bool
    src: np.ndarray  # (E,) int64
    dst: np.ndarray  # (E,) int64
    shift: np.ndarray  # (E, 3) float64 integer cell shifts
    task: int = 0
    energy: float = float("nan")
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    weight: float = 1.0
    id: str = ""


def species_table(elements: list[int]) -> np.ndarray:
    """Lookup Z -> species index (-1 for elements the model does not know)."""
    table = np.full(MAX_Z + 1, -1, dtype=np.int64)
    for i, z in enumerate(elements):
        table[int(z)] = i
    return table


def neighbours(
    positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list (both directions) with vesin: returns src, dst, integer shifts."""
    from vesin import NeighborList

    pbc = np.asarray(pbc, dtype=bool)
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    box = np.zeros((3, 3)) if cell is None else np.ascontiguousarray(cell, dtype=np.float64)
    if not pbc.any():
        box = np.zeros((3, 3))
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, s = nl.compute(points=pos, box=box, periodic=pbc.tolist(), quantities="ijS")
    return j.astype(np.int64), i.astype(np.int64), s.astype(np.float64)


def build_graph(
    numbers: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray,
    cutoff: float,
    table: np.ndarray,
    *,
    task: int = 0,
    energy: float | None = None,
    forces: np.ndarray | None = None,
    stress: np.ndarray | None = None,
    weight: float = 1.0,
    id: str = "",
) -> Graph:
    """Graph of one structure; raises ValueError naming ``id`` for elements the model lacks."""
    numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
    if numbers.size == 0:
        raise ValueError(f"structure {id!r}: no atoms")
    if numbers.max() > MAX_Z or numbers.min() < 1:
        raise ValueError(f"structure {id!r}: atomic number out of range")
    species = table[numbers]
    if (species < 0).any():
        missing = sorted(set(numbers[species < 0].tolist()))
        raise ValueError(f"structure {id!r}: elements {missing} are not in the model's element list")
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    src, dst, shift = neighbours(positions, cell, pbc, cutoff)
    cell_arr = np.zeros((3, 3)) if cell is None or not pbc.any() else np.asarray(cell, dtype=np.float64)
    return Graph(
        species=species,
        positions=positions,
        cell=cell_arr,
        pbc=pbc,
        src=src,
        dst=dst,
        shift=shift,
        task=int(task),
        energy=float("nan") if energy is None else float(energy),
        forces=None if forces is None else np.asarray(forces, dtype=np.float64).reshape(-1, 3),
        stress=None if stress is None else np.asarray(stress, dtype=np.float64).reshape(6),
        weight=float(weight),
        id=id,
    )


def graph_from_atoms(atoms, cutoff: float, table: np.ndarray, task: int = 0, labels: bool = True) -> Graph:
    """Graph of an ``ase.Atoms``; labels come from its calculator when ``labels`` is set."""
    energy = forces = stress = None
    if labels and atoms.calc is not None:
        res = atoms.calc.results
        energy = res.get("energy")
        forces = res.get("forces")
        stress = res.get("stress")
        if stress is not None and np.asarray(stress).shape == (3, 3):
            s = np.asarray(stress)
            stress = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    cell = np.asarray(atoms.cell.array) if atoms.pbc.any() else None
    return build_graph(
        atoms.numbers,
        atoms.positions,
        cell,
        atoms.pbc,
        cutoff,
        table,
        task=task,
        energy=energy,
        forces=forces,
        stress=stress,
    )


@dataclass
class Batch:
    """Concatenated graphs as torch tensors; ``*_mask`` say which labels exist."""

    pos: torch.Tensor
    species: torch.Tensor
    cell: torch.Tensor
    periodic: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    shift: torch.Tensor
    batch: torch.Tensor
    n_atoms: torch.Tensor
    task: torch.Tensor
    energy: torch.Tensor
    energy_mask: torch.Tensor
    forces: torch.Tensor
    forces_mask: torch.Tensor
    stress: torch.Tensor
    stress_mask: torch.Tensor
    weight: torch.Tensor

    @property
    def num_graphs(self) -> int:
        return int(self.n_atoms.shape[0])

    def to(self, device=None, dtype=None) -> Batch:
        """Move to ``device``; cast floating tensors to ``dtype`` when given."""
        out = {}
        for f in dataclasses.fields(self):
            t = getattr(self, f.name)
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            out[f.name] = t.to(device) if device is not None else t
        return Batch(**out)


def collate(graphs: list[Graph], dtype=None) -> Batch:
    """Concatenate graphs: node indices of edges are offset by the atoms before them."""
    import torch

    dtype = dtype or torch.get_default_dtype()
    n = np.array([len(g.species) for g in graphs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]])
    cat = np.concatenate
    forces = cat([g.forces if g.forces is not None else np.zeros((len(g.species), 3)) for g in graphs])
    fmask = cat([np.full(len(g.species), g.forces is not None) for g in graphs])
    stress = np.stack([g.stress if g.stress is not None else np.zeros(6) for g in graphs])
    smask = np.array([g.stress is not None and bool(g.pbc.all()) for g in graphs])
    energy = np.array([g.energy for g in graphs], dtype=np.float64)
    emask = np.isfinite(energy)

    def f(a):
        return torch.as_tensor(np.asarray(a), dtype=dtype)

    def i(a):
        return torch.as_tensor(np.asarray(a), dtype=torch.long)

    return Batch(
        pos=f(cat([g.positions for g in graphs])),
        species=i(cat([g.species for g in graphs])),
        cell=f(np.stack([g.cell for g in graphs])),
        periodic=torch.as_tensor(np.array([bool(g.pbc.any()) for g in graphs])),
        src=i(cat([g.src + o for g, o in zip(graphs, offsets)])),
        dst=i(cat([g.dst + o for g, o in zip(graphs, offsets)])),
        shift=f(cat([g.shift for g in graphs])),
        batch=i(np.repeat(np.arange(len(graphs)), n)),
        n_atoms=i(n),
        task=i([g.task for g in graphs]),
        energy=f(np.where(emask, energy, 0.0)),
        energy_mask=torch.as_tensor(emask),
        forces=f(forces),
        forces_mask=torch.as_tensor(fmask),
        stress=f(stress),
        stress_mask=torch.as_tensor(smask),
        weight=f([g.weight for g in graphs]),
    )
