"""Equivariant gate nonlinearity built from target irreps (NequIP convention)."""
from __future__ import annotations

import torch
from e3nn import o3
from e3nn.nn import Gate

_ACT = {1: torch.nn.functional.silu, -1: torch.tanh}


def build_gate(irreps_out: o3.Irreps) -> Gate:
    """Gate whose *output* is ``irreps_out``: scalars pass through SiLU (even) / tanh (odd),
    every l > 0 block is multiplied by a SiLU-activated even scalar gate.

    The gate's input irreps (``gate.irreps_in``) are what the preceding linear must produce.
    """
    irreps_out = o3.Irreps(irreps_out)
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
    gates = o3.Irreps([(mul, "0e") for mul, _ in gated]).simplify()
    return Gate(
        scalars, [_ACT[ir.p] for _, ir in scalars],
        gates, [torch.nn.functional.silu for _ in gates],
        gated,
    )
