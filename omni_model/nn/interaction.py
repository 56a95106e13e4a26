"""One interaction block (NequIP / SevenNet): linear -> tensor-product convolution weighted by a
radial MLP, normalised by the average neighbour count -> linear -> + self-connection -> gate."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from .gate import build_gate
from .radial import radial_mlp
from .task_linear import TaskLinear

__all__ = ["tp_irreps_and_instructions", "Interaction"]


def tp_irreps_and_instructions(
    irreps_node: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps
) -> tuple[o3.Irreps, list[tuple[int, int, int, str, bool]]]:
    """'uvu' paths node ⊗ sh -> every output irrep that the target irreps contain (sorted)."""
    wanted = {ir for _, ir in irreps_target}
    out: list[tuple[int, o3.Irrep]] = []
    instr: list[tuple[int, int, int, str, bool]] = []
    for i, (mul, ir_in) in enumerate(irreps_node):
        for j, (_, ir_edge) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_edge:
                if ir_out in wanted:
                    instr.append((i, j, len(out), "uvu", True))
                    out.append((mul, ir_out))
    irreps_mid = o3.Irreps(out)
    irreps_sorted, perm, _ = irreps_mid.sort()
    instr = [(i, j, perm[k], mode, train) for i, j, k, mode, train in instr]
    return irreps_sorted, instr


class Interaction(nn.Module):
    """Message passing layer ``irreps_in -> irreps_out`` conditioned on the task one-hot."""

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        num_basis: int,
        radial_hidden: list[int],
        avg_num_neighbors: float,
        n_tasks: int,
        task_intro: bool,
        task_outro: bool,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.gate = build_gate(o3.Irreps(irreps_out))
        self.irreps_out = self.gate.irreps_out
        irreps_gate_in = self.gate.irreps_in
        self.avg_num_neighbors = float(avg_num_neighbors)

        self.linear_1 = TaskLinear(self.irreps_in, self.irreps_in, n_tasks, task_intro)
        irreps_mid, instr = tp_irreps_and_instructions(self.irreps_in, irreps_sh, irreps_gate_in)
        self.tp = o3.TensorProduct(
            self.irreps_in, irreps_sh, irreps_mid, instr, shared_weights=False, internal_weights=False
        )
        self.radial = radial_mlp(num_basis, radial_hidden, self.tp.weight_numel)
        self.linear_2 = TaskLinear(irreps_mid, irreps_gate_in, n_tasks, task_outro)
        self.self_connection = TaskLinear(self.irreps_in, irreps_gate_in, n_tasks, use_task=False)

    def forward(
        self,
        x: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        node_task: torch.Tensor,
    ) -> torch.Tensor:
        """``src`` -> ``dst`` messages; edge vectors point from dst (centre) to src (neighbour)."""
        sc = self.self_connection(x, node_task)
        h = self.linear_1(x, node_task)
        weights = self.radial(edge_radial)
        msg = self.tp(h[src], edge_sh, weights)
        agg = torch.zeros(x.shape[0], msg.shape[1], dtype=msg.dtype, device=msg.device)
        agg = agg.index_add_(0, dst, msg) * (1.0 / self.avg_num_neighbors)
        h = self.linear_2(agg, node_task)
        return self.gate(h + sc)
