"""TaskLinear: an equivariant linear layer with the task one-hot concatenated to its input.

Concatenating a one-hot of ``n_tasks`` scalars to the input of an e3nn ``Linear`` (what
SevenNet's modal layers do) only adds a ``0e -> 0e`` path: a per-task bias on the scalar
outputs. We keep that path as its own parameter, ``task_weight`` (n_tasks, n_scalar_out), so the
model can hand it to the optimizer and the regulariser as θ_T by module type, never by name.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn

__all__ = ["scalar_output_index", "TaskLinear"]


def scalar_output_index(irreps: o3.Irreps) -> torch.Tensor:
    """Positions of the even-scalar (0e) components inside a feature vector of ``irreps``."""
    idx: list[int] = []
    for (_mul, ir), sl in zip(irreps, irreps.slices()):
        if ir.l == 0 and ir.p == 1:
            idx.extend(range(sl.start, sl.stop))
    return torch.tensor(idx, dtype=torch.long)


class TaskLinear(nn.Module):
    """``y = Linear(x) + onehot(task) @ W_T`` on the 0e outputs; ``W_T`` is task-specific.

    With ``n_tasks <= 1`` (or ``use_task=False``) it is a plain e3nn ``Linear`` and owns no θ_T.
    The task block is scaled like e3nn scales the concatenated input: by 1/sqrt(fan_in), where
    fan_in counts the input scalars plus the one-hot channels. Unlike SevenNet (random init) it
    starts at zero, so all heads start equal to the shared model.
    """

    def __init__(
        self, irreps_in: o3.Irreps | str, irreps_out: o3.Irreps | str, n_tasks: int = 0, use_task: bool = True
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.linear = o3.Linear(self.irreps_in, self.irreps_out)
        self.n_tasks = int(n_tasks) if use_task and n_tasks > 1 else 0
        idx = scalar_output_index(self.irreps_out)
        self.register_buffer("scalar_index", idx, persistent=False)
        if self.n_tasks:
            n_scalar_in = sum(mul for mul, ir in self.irreps_in if ir.l == 0 and ir.p == 1)
            self.task_norm = 1.0 / math.sqrt(n_scalar_in + self.n_tasks)
            # zero start: every task begins as the shared model, the per-task energy offsets
            # live in ShiftScale's references; training (and λ‖θ_T‖²) decide how far tasks split
            self.task_weight = nn.Parameter(torch.zeros(self.n_tasks, len(idx)))
        else:
            self.task_norm = 0.0
            self.register_parameter("task_weight", None)

    def task_parameters(self) -> list[nn.Parameter]:
        """θ_T owned by this layer (empty for a single-task layer)."""
        return [] if self.task_weight is None else [self.task_weight]

    def regularization_terms(self) -> list[torch.Tensor]:
        """Tensors whose squared norm the selective regulariser penalises."""
        return self.task_parameters()

    def forward(self, x: torch.Tensor, node_task: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (N, irreps_in.dim); ``node_task`` (N,) task index of each node's graph."""
        # under bf16 autocast the input may arrive in bf16; e3nn's Linear (tensordot) is not
        # autocast-aware, so it runs in the parameters' dtype
        y = self.linear(x.to(self.linear.weight.dtype) if self.linear.weight.numel() else x)
        if self.task_weight is None or node_task is None:
            return y
        bias = self.task_weight[node_task] * self.task_norm  # (N, n_scalar_out)
        return y.index_add(1, self.scalar_index, bias.to(y.dtype))
