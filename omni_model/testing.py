"""Checks shipped with the package (like e3nn's ``assert_equivariant``): symmetry of energy,
forces and stress, forces and stress against finite differences. Tests reuse them, and so can
anyone who changes a layer. Each returns the largest error found and raises AssertionError
beyond ``atol``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "predict",
    "voigt_to_matrix",
    "assert_rotation_equivariant",
    "assert_translation_invariant",
    "assert_permutation_equivariant",
    "assert_forces_match_fd",
    "assert_stress_matches_fd",
    "run_ddp_steps",
    "assert_smooth_at_cutoff",
]


def predict(model, atoms, task: int = 0) -> dict[str, np.ndarray]:
    """energy, forces, stress (Voigt, ASE sign) of one ``ase.Atoms`` in the model's dtype."""
    from .data.graph import collate, graph_from_atoms, species_table

    dtype = next(model.parameters()).dtype
    g = graph_from_atoms(atoms, model.cfg.cutoff, species_table(model.elements), task=task, labels=False)
    batch = collate([g], dtype=dtype)
    out = model(batch, forces=True, stress=bool(atoms.pbc.all()))
    res = {"energy": out["energy"].detach().numpy()[0], "forces": out["forces"].detach().numpy()}
    if "stress" in out:
        res["stress"] = out["stress"].detach().numpy()[0]
    return res


def voigt_to_matrix(v: np.ndarray) -> np.ndarray:
    """(6,) xx,yy,zz,yz,xz,xy -> symmetric (3, 3)."""
    xx, yy, zz, yz, xz, xy = v
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def _check(name: str, err: float, atol: float) -> float:
    if not err <= atol:
        raise AssertionError(f"{name}: max error {err:.3e} > {atol:.1e}")
    return err


def assert_rotation_equivariant(model, atoms, rotation: np.ndarray, task: int = 0, atol: float = 1e-8) -> float:
    """E(Rx) = E(x), F(Rx) = R F(x), σ(Rx) = R σ(x) Rᵀ for a proper or improper ``rotation``."""
    ref = predict(model, atoms, task)
    rot = atoms.copy()
    rot.positions = atoms.positions @ rotation.T
    if atoms.pbc.any():
        rot.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    out = predict(model, rot, task)
    errs = [abs(out["energy"] - ref["energy"]), np.abs(out["forces"] - ref["forces"] @ rotation.T).max()]
    if "stress" in ref:
        s_ref = rotation @ voigt_to_matrix(ref["stress"]) @ rotation.T
        errs.append(np.abs(voigt_to_matrix(out["stress"]) - s_ref).max())
    return _check("rotation equivariance", float(max(errs)), atol)


def assert_translation_invariant(model, atoms, shift: np.ndarray, task: int = 0, atol: float = 1e-8) -> float:
    """Energy, forces and stress unchanged by a rigid translation."""
    ref = predict(model, atoms, task)
    moved = atoms.copy()
    moved.positions = atoms.positions + np.asarray(shift)
    out = predict(model, moved, task)
    errs = [abs(out["energy"] - ref["energy"]), np.abs(out["forces"] - ref["forces"]).max()]
    if "stress" in ref:
        errs.append(np.abs(out["stress"] - ref["stress"]).max())
    return _check("translation invariance", float(max(errs)), atol)


def assert_permutation_equivariant(model, atoms, perm: np.ndarray, task: int = 0, atol: float = 1e-8) -> float:
    """Reordering atoms leaves E and σ unchanged and permutes the forces the same way."""
    ref = predict(model, atoms, task)
    out = predict(model, atoms[list(perm)], task)
    errs = [abs(out["energy"] - ref["energy"]), np.abs(out["forces"] - ref["forces"][perm]).max()]
    if "stress" in ref:
        errs.append(np.abs(out["stress"] - ref["stress"]).max())
    return _check("permutation equivariance", float(max(errs)), atol)


def assert_forces_match_fd(
    model, atoms, task: int = 0, eps: float = 1e-5, atol: float = 1e-6, n_checks: int = 6, seed: int = 0
) -> float:
    """F = -dE/dx by central differences on ``n_checks`` random coordinates (use float64)."""
    rng = np.random.default_rng(seed)
    forces = predict(model, atoms, task)["forces"]
    err = 0.0
    for _ in range(n_checks):
        a, k = int(rng.integers(len(atoms))), int(rng.integers(3))
        e = []
        for sign in (1, -1):
            p = atoms.copy()
            p.positions[a, k] += sign * eps
            e.append(predict(model, p, task)["energy"])
        err = max(err, abs(-(e[0] - e[1]) / (2 * eps) - forces[a, k]))
    return _check("forces vs finite differences", err, atol)


def assert_stress_matches_fd(model, atoms, task: int = 0, eps: float = 1e-5, atol: float = 1e-6) -> float:
    """σ = (1/V) dE/dε by central differences of symmetric strains (ASE sign convention)."""
    from .model import VOIGT

    stress = predict(model, atoms, task)["stress"]
    vol = atoms.get_volume()
    err = 0.0
    for v, (a, b) in enumerate(VOIGT):
        e = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += sign * eps / (2 if a != b else 1)
            strain[b, a] += sign * eps / 2 if a != b else 0.0
            p = atoms.copy()
            p.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            e.append(predict(model, p, task)["energy"])
        fd = (e[0] - e[1]) / (2 * eps) / vol
        err = max(err, abs(fd - stress[v]))
    return _check("stress vs finite differences", err, atol)


def _ddp_worker(rank: int, world: int, port: int, cfg_dict: dict, batches: list, out: str) -> None:
    """One rank of ``run_ddp_steps``: its slice of each global batch, then save rank 0's result."""
    import os

    import torch
    import torch.distributed as dist

    from .config import config_from_dict
    from .train.ddp import DistInfo
    from .train.trainer import Trainer

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        tr = Trainer(config_from_dict(cfg_dict), dist=DistInfo(rank, world, 0))
        losses = []
        for ks in batches:
            per = len(ks) // world
            losses.append(tr.train_step(tr.prep.train.graphs(ks[rank * per : (rank + 1) * per]))["loss"])
        if rank == 0:
            torch.save(
                {
                    "params": {k: v.detach() for k, v in tr.model.state_dict().items()},
                    "losses": torch.tensor(losses, dtype=torch.float64),
                },
                os.path.join(out, "ddp.pt"),
            )
    finally:
        dist.destroy_process_group()


def run_ddp_steps(cfg, batches: list[list[int]], out_dir: str, world: int = 2) -> dict:
    """Train ``len(batches)`` steps with ``world`` gloo processes (each global batch of training
    positions split evenly across ranks); returns {"losses", "params"} of rank 0. Compare with a
    single-process ``Trainer.train_step`` on the joined batches: they must agree."""
    import socket

    import torch
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(world, port, cfg.to_dict(), batches, str(out_dir)), nprocs=world, join=True)
    return torch.load(f"{out_dir}/ddp.pt", weights_only=True)


def assert_smooth_at_cutoff(
    model, z: tuple[int, int] | None = None, task: int = 0, delta: float = 1e-3, atol: float = 1e-6
) -> float:
    """A dimer just inside and just outside the cutoff has the same energy and ~zero force:
    the polynomial envelope makes E and F continuous as a neighbour crosses r_c."""
    from ase import Atoms

    rc = model.cfg.cutoff
    z = z or (model.elements[0], model.elements[-1])
    res = []
    for r in (rc - delta, rc + delta):
        res.append(predict(model, Atoms(numbers=list(z), positions=[[0, 0, 0], [r, 0, 0]]), task))
    err = max(abs(res[0]["energy"] - res[1]["energy"]), float(np.abs(res[0]["forces"]).max()))
    return _check("smoothness at the cutoff", err, atol)
