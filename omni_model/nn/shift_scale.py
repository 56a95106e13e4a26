"""Per-task atomic energy shift and scale: E_i = scale[task] * e_i + shift[task, Z_i].

The shift is initialised from each task's elemental reference energies (μ_el) and the reference
copy is kept as a buffer, frozen into the checkpoint: fine-tuning never refits it. The
regulariser penalises only the *deviation* from that reference (shrinking an atomic energy of
-5 eV to 0 would be nonsense), see ``regularization_terms``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ShiftScale"]


class ShiftScale(nn.Module):
    """Task- and element-wise shift (n_tasks, n_species) and task-wise scale (n_tasks,)."""

    def __init__(self, n_tasks: int, n_species: int, trainable: bool = True) -> None:
        super().__init__()
        n_tasks = max(n_tasks, 1)
        self.shift = nn.Parameter(torch.zeros(n_tasks, n_species), requires_grad=trainable)
        self.scale = nn.Parameter(torch.ones(n_tasks), requires_grad=trainable)
        self.register_buffer("ref_shift", torch.zeros(n_tasks, n_species))
        self.register_buffer("ref_scale", torch.ones(n_tasks))

    @torch.no_grad()
    def set_reference(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        """Set both the starting values and the frozen reference copy."""
        self.shift.copy_(shift)
        self.scale.copy_(scale)
        self.ref_shift.copy_(shift)
        self.ref_scale.copy_(scale)

    def task_parameters(self) -> list[nn.Parameter]:
        return [self.shift, self.scale]

    def regularization_terms(self) -> list[torch.Tensor]:
        return [self.shift - self.ref_shift, self.scale - self.ref_scale]

    def forward(self, e_atom: torch.Tensor, species: torch.Tensor, node_task: torch.Tensor) -> torch.Tensor:
        return e_atom * self.scale[node_task] + self.shift[node_task, species]
