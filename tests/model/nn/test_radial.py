"""Bessel basis and polynomial envelope against their formulas."""

from __future__ import annotations

import math

import torch

from omni_model.nn.radial import BesselBasis, PolynomialCutoff, RadialEmbedding


def test_bessel_values_by_hand():
    b = BesselBasis(cutoff=5.0, num_basis=3).double()
    r = torch.tensor([0.7, 2.5], dtype=torch.float64)
    want = [[math.sqrt(2 / 5) * math.sin(n * math.pi * x / 5) / x for n in (1, 2, 3)] for x in (0.7, 2.5)]
    torch.testing.assert_close(b(r), torch.tensor(want, dtype=torch.float64))


def test_envelope_is_one_at_zero_zero_at_cutoff_with_vanishing_derivatives():
    env = PolynomialCutoff(cutoff=4.0, p=6)
    assert float(env(torch.tensor(0.0, dtype=torch.float64))) == 1.0
    r = torch.tensor(4.0 - 1e-9, dtype=torch.float64, requires_grad=True)
    u = env(r)
    (d1,) = torch.autograd.grad(u, r, create_graph=True)
    (d2,) = torch.autograd.grad(d1, r)
    assert abs(float(u.detach())) < 1e-12 and abs(float(d1.detach())) < 1e-9 and abs(float(d2)) < 1e-6
    assert float(env(torch.tensor(4.5, dtype=torch.float64))) == 0.0
    # p = 6 polynomial at x = 1/2 worked out by hand: 1 - 28/64 + 48/128 - 21/256
    assert float(env(torch.tensor(2.0, dtype=torch.float64))) == 1 - 28 / 64 + 48 / 128 - 21 / 256


def test_radial_embedding_vanishes_beyond_cutoff():
    emb = RadialEmbedding(cutoff=3.0, num_basis=4)
    out = emb(torch.tensor([1.0, 3.0, 3.5]))
    assert out.shape == (3, 4) and torch.all(out[1:] == 0) and torch.any(out[0] != 0)
