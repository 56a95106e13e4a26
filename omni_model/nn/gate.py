"""Equivariant gate nonlinearity (NequIP convention), written with a few whole-tensor ops.

Input layout (``gate.irreps_in``) = scalars ⊕ gates (one 0e per gated channel) ⊕ gated;
output (``gate.irreps_out``) = act(scalars) ⊕ act(gates)·gated. Activations are normalised to
unit second moment (e3nn's ``normalize2mom``), so this matches ``e3nn.nn.Gate`` numerically
while avoiding its per-block element-wise tensor product (one gather and one multiply here).
"""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.math import normalize2mom
from torch import nn

__all__ = ["Gate", "build_gate"]


class Gate(nn.Module):
    """Gate whose *output* is ``irreps_out`` (scalars first, then l > 0 blocks)."""

    def __init__(self, irreps_out: o3.Irreps) -> None:
        super().__init__()
        irreps_out = o3.Irreps(irreps_out)
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
        n_gates = sum(mul for mul, _ in gated)
        self.irreps_in = (scalars + o3.Irreps(f"{n_gates}x0e" if n_gates else "") + gated).simplify()
        self.irreps_out = scalars + gated
        self.n_scalars, self.n_gates = scalars.dim, n_gates
        self.act_even = normalize2mom(torch.nn.functional.silu)
        self.act_odd = normalize2mom(torch.tanh)
        self.act_gate = normalize2mom(torch.nn.functional.silu)
        odd = torch.cat([torch.full((mul,), ir.p == -1) for mul, ir in scalars]) if len(scalars) else torch.zeros(0)
        self.register_buffer("odd_mask", odd.bool(), persistent=False)
        self.any_odd = bool(odd.any())
        # gate index of every component of the gated block
        idx, g = [], 0
        for mul, ir in gated:
            for _ in range(mul):
                idx += [g] * ir.dim
                g += 1
        self.register_buffer("gate_index", torch.tensor(idx, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, : self.n_scalars]
        if self.any_odd:
            s = torch.where(self.odd_mask, self.act_odd(s), self.act_even(s))
        else:
            s = self.act_even(s)
        if not self.n_gates:
            return s
        gates = self.act_gate(x[:, self.n_scalars : self.n_scalars + self.n_gates])
        gated = x[:, self.n_scalars + self.n_gates :]
        return torch.cat([s, gated * gates.index_select(1, self.gate_index)], dim=1)


def build_gate(irreps_out: o3.Irreps) -> Gate:
    """The gate producing ``irreps_out``; the preceding linear must produce ``gate.irreps_in``."""
    return Gate(irreps_out)
