"""TaskLinear: the task block is a per-task bias on the 0e outputs only, θ_T by type."""

from __future__ import annotations

import torch
from e3nn import o3

from omni_model.nn.spherical import hidden_irreps
from omni_model.nn.task_linear import TaskLinear, scalar_output_index


def test_scalar_index_points_at_even_scalars():
    irreps = o3.Irreps("2x0e+1x1o+1x0o+3x0e")
    assert scalar_output_index(irreps).tolist() == [0, 1, 6, 7, 8]  # 1o takes 2..4, 0o takes 5


def test_task_block_adds_bias_to_scalars_only():
    lin = TaskLinear("4x0e+2x1o", "3x0e+2x1o+1x0e", n_tasks=3)
    with torch.no_grad():
        lin.task_weight.copy_(torch.arange(12.0).reshape(3, 4))
    x = torch.randn(5, lin.irreps_in.dim)
    tasks = torch.tensor([0, 1, 2, 2, 0])
    plain = lin.linear(x)
    out = lin(x, tasks)
    diff = out - plain
    idx = scalar_output_index(lin.irreps_out)
    expected = torch.zeros_like(diff)
    expected[:, idx] = lin.task_weight[tasks] / (4 + 3) ** 0.5
    torch.testing.assert_close(diff, expected)
    assert lin.task_parameters() == [lin.task_weight]


def test_single_task_layer_is_plain_linear_and_fresh_task_block_is_zero():
    single = TaskLinear("4x0e", "4x0e", n_tasks=1)
    assert single.task_weight is None and single.task_parameters() == []
    multi = TaskLinear("4x0e", "4x0e", n_tasks=2)
    assert torch.count_nonzero(multi.task_weight) == 0


def test_hidden_irreps_halve_per_l_and_cover_both_parities():
    assert hidden_irreps(128, 3, parity=True) == o3.Irreps("128x0e+64x1o+64x1e+32x2o+32x2e+16x3o+16x3e")
    assert hidden_irreps(16, 2, parity=False, halve=False) == o3.Irreps("16x0e+16x1e+16x2e")
