"""Scalar readout: node scalars -> hidden -> one per-atom energy (task-conditioned linears)."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from .task_linear import TaskLinear

__all__ = ["Readout"]


class Readout(nn.Module):
    """``TaskLinear(C x 0e -> H x 0e) -> SiLU -> TaskLinear(H x 0e -> 1 x 0e)``."""

    def __init__(self, irreps_in: o3.Irreps, hidden: int, n_tasks: int, use_task: bool) -> None:
        super().__init__()
        self.lin1 = TaskLinear(irreps_in, o3.Irreps(f"{hidden}x0e"), n_tasks, use_task)
        self.lin2 = TaskLinear(o3.Irreps(f"{hidden}x0e"), o3.Irreps("1x0e"), n_tasks, use_task)

    def forward(self, x: torch.Tensor, node_task: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.silu(self.lin1(x, node_task))
        return self.lin2(h, node_task).squeeze(-1)
