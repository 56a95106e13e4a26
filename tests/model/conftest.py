"""Small float64 models and EMT-labelled structures shared by the omni_model tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omni_model.config import ModelConfig
from omni_model.model import OmniModel

# Tiny tensors on a shared 2-core machine: extra intra-op threads only spin and wait (10x slower).
torch.set_num_threads(1)


def small_model(
    parity: bool = True,
    tasks: tuple[str, ...] = ("a", "b"),
    seed: int = 0,
    dtype=torch.float64,
    num_layers: int = 2,
    **kw,
) -> OmniModel:
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # e3nn computes its Clebsch-Gordan buffers in the default dtype
    cfg = ModelConfig(
        channels=8,
        lmax=2,
        num_layers=num_layers,
        cutoff=4.0,
        radial_hidden=[16],
        parity=parity,
        elements=["Cu", "Au", "Pt"],
        tasks=list(tasks),
        avg_num_neighbors=12.0,
        task_embedding=True,
        **kw,
    )
    try:
        m = OmniModel(cfg).to(dtype)
    finally:
        torch.set_default_dtype(old)
    with torch.no_grad():  # non-trivial shift/scale so the checks see them
        m.shift_scale.shift.uniform_(-1, 1)
        m.shift_scale.scale.uniform_(0.5, 2)
    return m


def emt_structures(n: int = 6, seed: int = 0):
    """Rattled Cu/Au/Pt fcc cells and a slab, labelled with ASE's EMT."""
    from ase.build import bulk, fcc111
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        if k % 3 == 2:
            a = fcc111("Pt", size=(2, 2, 2), vacuum=4.0)
        else:
            a = bulk(["Cu", "Au", "Pt"][k % 3], "fcc", a=3.7 + 0.2 * (k % 3), cubic=True)
        sym = a.get_chemical_symbols()
        sym[0] = "Au" if sym[0] != "Au" else "Cu"
        a.set_chemical_symbols(sym)
        a.rattle(0.08, seed=int(rng.integers(1 << 30)))
        if a.pbc.all():
            a.set_cell(a.cell.array @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3))), scale_atoms=True)
        a.calc = EMT()
        a.get_potential_energy(), a.get_forces()
        if a.pbc.all():
            a.get_stress()
        out.append(a)
    return out


@pytest.fixture
def model64() -> OmniModel:
    return small_model()


def atoms_record(atoms, i: int, task: str, dataset: str = "emt", with_forces: bool = True):
    """A schema Record of an EMT-labelled ase.Atoms (stress only for fully periodic cells)."""
    from omni_data.schema import Record

    pbc = atoms.pbc.copy()
    return Record(
        numbers=atoms.numbers.copy(),
        positions=atoms.positions.copy(),
        id=f"{dataset}:{i}",
        dataset=dataset,
        task=task,
        cell=atoms.cell.array.copy() if pbc.any() else None,
        pbc=pbc,
        energy=float(atoms.get_potential_energy()),
        forces=atoms.get_forces().copy() if with_forces else None,
        stress=atoms.get_stress().copy() if pbc.all() else None,
        source_file="emt",
        source_index=i,
    ).normalized()


def make_store(path, n: int = 12, tasks: tuple[str, ...] = ("a", "b"), seed: int = 0, energy_offset=None):
    """A real Omni store of EMT structures; task k gets energies shifted by offset[k] eV/atom so
    the tasks genuinely disagree (like PBE vs r2SCAN)."""
    from omni_data.store import write_shard

    offsets = energy_offset or {t: 0.5 * k for k, t in enumerate(tasks)}
    recs = []
    for i, a in enumerate(emt_structures(n, seed)):
        t = tasks[i % len(tasks)]
        r = atoms_record(a, i, t)
        r.energy += offsets[t] * len(a)
        recs.append(r)
    write_shard(path, "part-0", recs)
    return path


@pytest.fixture(scope="session")
def emt_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store") / "emt", n=16)
