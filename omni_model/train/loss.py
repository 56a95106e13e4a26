"""Masked, per-task weighted loss on energy per atom, force and stress components.

A missing label is masked out, never treated as zero. Each term is a weighted mean over the
labels present: Σ w·ρ(err) / count, where w = record weight x per-task weight and ρ is Huber or
squared error. ``counts`` can be supplied (the global counts across DDP ranks) so that summing
the ranks' gradients gives exactly the gradient of the joined batch.
"""

from __future__ import annotations

import torch

from ..config import LossConfig
from ..data.graph import Batch

__all__ = ["task_weight_table", "label_counts", "compute_loss"]


def task_weight_table(cfg: LossConfig, tasks: list[str]) -> torch.Tensor:
    """(n_tasks, 3) per-task weights for energy, forces, stress (1 unless configured)."""
    unknown = sorted(set(cfg.per_task) - set(tasks))
    if unknown:
        raise ValueError(f"loss.per_task names unknown tasks {unknown}; model tasks: {tasks}")
    rows = []
    for t in tasks:
        w = cfg.per_task.get(t)
        rows.append([1.0, 1.0, 1.0] if w is None else [w.energy, w.forces, w.stress])
    return torch.tensor(rows, dtype=torch.float64)


def label_counts(batch: Batch) -> torch.Tensor:
    """(3,) number of energy, force-component and stress-component labels in ``batch``."""
    return torch.stack([batch.energy_mask.sum(), 3 * batch.forces_mask.sum(), 6 * batch.stress_mask.sum()]).to(
        torch.float64
    )


def _rho(err: torch.Tensor, kind: str, delta: float) -> torch.Tensor:
    if kind == "huber":
        return torch.nn.functional.huber_loss(err, torch.zeros_like(err), reduction="none", delta=delta)
    return err.square()


def compute_loss(
    pred: dict[str, torch.Tensor],
    batch: Batch,
    cfg: LossConfig,
    task_w: torch.Tensor,
    counts: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """{"total", "energy", "forces", "stress"}; each component already divided by its count."""
    if counts is None:
        counts = label_counts(batch)
    counts = counts.clamp(min=1.0)
    dtype = pred["energy"].dtype
    tw = task_w.to(device=batch.pos.device, dtype=dtype)[batch.task]  # (B, 3)
    w = batch.weight.to(dtype)
    zero = pred["energy"].sum() * 0.0
    out = {}
    # energy per atom
    m = batch.energy_mask
    e_err = (pred["energy"] - batch.energy) / batch.n_atoms.to(dtype)
    out["energy"] = (w * tw[:, 0] * _rho(e_err, cfg.kind, cfg.huber_delta))[m].sum() / counts[0]
    # forces
    if "forces" in pred and batch.forces_mask.any():
        wa = (w * tw[:, 1])[batch.batch]
        f = _rho(pred["forces"] - batch.forces, cfg.kind, cfg.huber_delta).sum(dim=1)
        out["forces"] = (wa * f)[batch.forces_mask].sum() / counts[1]
    else:
        out["forces"] = zero
    # stress
    if "stress" in pred and batch.stress_mask.any():
        s = _rho(pred["stress"] - batch.stress, cfg.kind, cfg.huber_delta).sum(dim=1)
        out["stress"] = (w * tw[:, 2] * s)[batch.stress_mask].sum() / counts[2]
    else:
        out["stress"] = zero
    out["total"] = (
        cfg.energy_weight * out["energy"] + cfg.forces_weight * out["forces"] + cfg.stress_weight * out["stress"]
    )
    return out
