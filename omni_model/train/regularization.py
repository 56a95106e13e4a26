"""Selective regularization: λ·‖θ_T‖² on the task-specific parameters only.

θ_T is what ``model.regularization_terms()`` returns (TaskLinear / ElementEmbedding task
blocks, and ShiftScale's deviation from its frozen references). The shared parameters θ_C get
no penalty, so their gradient is untouched; the optimizer's weight decay is split the same way.
"""

from __future__ import annotations

import torch

__all__ = ["task_l2", "optimizer_groups"]


def task_l2(model, lam: float) -> torch.Tensor:
    """λ Σ ‖t‖² over the model's θ_T terms (0 when λ = 0)."""
    terms = model.regularization_terms()
    if lam == 0 or not terms:
        p = next(model.parameters())
        return p.new_zeros(())
    return lam * sum(t.square().sum() for t in terms)


def optimizer_groups(model, weight_decay_task: float = 0.0, weight_decay_shared: float = 0.0) -> list[dict]:
    """AdamW parameter groups: decoupled weight decay on θ_T and θ_C set separately."""
    g = model.parameter_groups()
    groups = [
        {"params": [p for p in g["task"] if p.requires_grad], "weight_decay": weight_decay_task, "name": "task"},
        {"params": [p for p in g["shared"] if p.requires_grad], "weight_decay": weight_decay_shared, "name": "shared"},
    ]
    return [grp for grp in groups if grp["params"]]
