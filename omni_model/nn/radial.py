"""Radial features of an edge: Bessel basis times a smooth polynomial cutoff, and the MLP that
turns them into tensor-product weights (NequIP / SevenNet style)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["BesselBasis", "PolynomialCutoff", "RadialEmbedding", "radial_mlp"]


class BesselBasis(nn.Module):
    """``sqrt(2/rc) * sin(n π r / rc) / r`` for n = 1..num_basis (trainable frequencies)."""

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = True) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.prefactor = math.sqrt(2.0 / self.cutoff)
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / self.cutoff
        if trainable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.freqs * r) / r


class PolynomialCutoff(nn.Module):
    """Smooth envelope going to 0 with p-1 vanishing derivatives at the cutoff (DimeNet, p=6)."""

    def __init__(self, cutoff: float, p: int = 6) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = float(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = r / self.cutoff
        out = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * x.pow(p)
            + p * (p + 2.0) * x.pow(p + 1.0)
            - p * (p + 1.0) / 2.0 * x.pow(p + 2.0)
        )
        return out * (x < 1.0)


class RadialEmbedding(nn.Module):
    """Edge length -> (E, num_basis) features that vanish smoothly at the cutoff."""

    def __init__(self, cutoff: float, num_basis: int = 8, p: int = 6) -> None:
        super().__init__()
        self.basis = BesselBasis(cutoff, num_basis)
        self.envelope = PolynomialCutoff(cutoff, p)
        self.num_basis = num_basis

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.basis(r) * self.envelope(r).unsqueeze(-1)


def radial_mlp(num_basis: int, hidden: list[int], n_out: int) -> nn.Module:
    """e3nn FullyConnectedNet (variance-preserving, SiLU) mapping radial features to TP weights."""
    from e3nn.nn import FullyConnectedNet

    return FullyConnectedNet([num_basis, *hidden, n_out], torch.nn.functional.silu)
