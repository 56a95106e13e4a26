"""Element embedding: species index -> C scalar channels, optionally plus a per-task block."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ElementEmbedding"]


class ElementEmbedding(nn.Module):
    """A linear layer on the element one-hot (done as a table lookup, same result, faster).

    Features start with unit variance; with a task block the two parts are summed and divided
    by sqrt(2) so the scale stays the same.

    With ``n_tasks > 1`` the task one-hot is concatenated to its input, i.e. a per-task vector is
    added: ``task_weight`` is θ_T; the element table is θ_C.
    """

    def __init__(self, n_species: int, channels: int, n_tasks: int = 0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_species, channels))
        self.n_tasks = n_tasks if n_tasks > 1 else 0
        if self.n_tasks:
            self.task_weight = nn.Parameter(torch.zeros(self.n_tasks, channels))  # heads start equal
        else:
            self.register_parameter("task_weight", None)

    def task_parameters(self) -> list[nn.Parameter]:
        return [] if self.task_weight is None else [self.task_weight]

    def regularization_terms(self) -> list[torch.Tensor]:
        return self.task_parameters()

    def forward(self, species: torch.Tensor, node_task: torch.Tensor | None = None) -> torch.Tensor:
        x = self.weight[species]
        if self.task_weight is not None and node_task is not None:
            x = (x + self.task_weight[node_task]) * math.sqrt(0.5)
        return x
