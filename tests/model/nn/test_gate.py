"""Our gate equals e3nn.nn.Gate (same normalised activations, same layout) and is equivariant."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3
from e3nn.nn import Gate as E3nnGate

from omni_model.nn.gate import Gate


@pytest.mark.parametrize("irreps", ["8x0e+4x1o+4x1e+2x2e", "6x0e", "2x0e+5x1o+1x3e"])
def test_matches_e3nn_gate(irreps):
    irreps = o3.Irreps(irreps)
    ours = Gate(irreps)
    scalars = o3.Irreps([(m, ir) for m, ir in irreps if ir.l == 0])
    gated = o3.Irreps([(m, ir) for m, ir in irreps if ir.l > 0])
    acts = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
    ref = E3nnGate(
        scalars,
        acts,
        o3.Irreps(f"{gated.num_irreps}x0e") if len(gated) else o3.Irreps(""),
        [torch.nn.functional.silu] if len(gated) else [],
        gated,
    )
    assert ours.irreps_in.dim == ref.irreps_in.dim and ours.irreps_out == ref.irreps_out
    x = torch.randn(7, ours.irreps_in.dim, dtype=torch.float64)
    torch.testing.assert_close(ours(x.float()), ref(x.float()), atol=1e-6, rtol=1e-5)


def test_equivariant_under_rotation():
    irreps = o3.Irreps("4x0e+3x1o+2x2e")
    g = Gate(irreps)
    rot = o3.rand_matrix(dtype=torch.float64).float()
    x = torch.randn(5, g.irreps_in.dim)
    d_in, d_out = g.irreps_in.D_from_matrix(rot), g.irreps_out.D_from_matrix(rot)
    torch.testing.assert_close(g(x @ d_in.T), g(x) @ d_out.T, atol=1e-5, rtol=1e-5)


def test_odd_scalars_use_tanh_and_keep_their_place():
    """e3nn sorts odd scalars ahead of the gates; we keep scalars ⊕ gates ⊕ gated in order."""
    from e3nn.math import normalize2mom

    g = Gate(o3.Irreps("3x0e+2x0o+5x1o"))
    assert g.irreps_in == o3.Irreps("3x0e+2x0o+5x0e+5x1o")
    x = torch.randn(4, g.irreps_in.dim)
    y = g(x)
    torch.testing.assert_close(y[:, 3:5], normalize2mom(torch.tanh)(x[:, 3:5]))
    torch.testing.assert_close(y[:, :3], normalize2mom(torch.nn.functional.silu)(x[:, :3]))
    gate = normalize2mom(torch.nn.functional.silu)(x[:, 5:10])
    torch.testing.assert_close(y[:, 5:].reshape(4, 5, 3), x[:, 10:].reshape(4, 5, 3) * gate[:, :, None])
