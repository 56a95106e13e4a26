"""Spherical harmonics of edge directions and the node irreps used by the hidden layers."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

__all__ = ["sh_irreps", "hidden_irreps", "EdgeSH"]


def sh_irreps(lmax: int, parity: bool) -> o3.Irreps:
    """Irreps of Y_l for l <= lmax: parity (-1)^l under full E(3), all even under SE(3)."""
    return o3.Irreps.spherical_harmonics(lmax, p=-1 if parity else 1)


def hidden_irreps(channels: int, lmax: int, parity: bool, halve: bool = True) -> o3.Irreps:
    """Node irreps ``C x 0e + C/2 x 1? + ...`` (SevenNet-Omni halves the channels per l).

    With ``parity`` every l > 0 appears with both parities; without it only even ones.
    """
    parts: list[tuple[int, tuple[int, int]]] = []
    for l in range(lmax + 1):
        mul = max(channels >> l, 1) if halve else channels
        if l == 0:
            parts.append((mul, (0, 1)))
        elif parity:
            parts += [(mul, (l, -1)), (mul, (l, 1))]
        else:
            parts.append((mul, (l, 1)))
    return o3.Irreps(parts).sort().irreps.simplify()


class EdgeSH(nn.Module):
    """Component-normalised spherical harmonics of the (normalised) edge vectors."""

    def __init__(self, lmax: int, parity: bool) -> None:
        super().__init__()
        self.irreps = sh_irreps(lmax, parity)
        self.sh = o3.SphericalHarmonics(self.irreps, normalize=True, normalization="component")

    def forward(self, vec: torch.Tensor) -> torch.Tensor:
        return self.sh(vec)
