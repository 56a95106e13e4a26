"""Learning-rate schedule values worked out by hand, and the EMA update rule."""

from __future__ import annotations

import math

import pytest
import torch

from omni_model.config import OptimConfig
from omni_model.train.ema import EMA
from omni_model.train.optim import LRSchedule


def test_warmup_then_cosine_to_min_ratio():
    s = LRSchedule(OptimConfig(lr=1.0, scheduler="cosine", warmup_steps=4, min_lr_ratio=0.1), total_steps=14)
    assert [s.factor(k) for k in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # after warmup: t = (step - 4) / 10
    assert s.factor(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s.factor(14) == pytest.approx(0.1)
    lin = LRSchedule(OptimConfig(lr=2.0, scheduler="linear", min_lr_ratio=0.0), total_steps=10)
    assert lin.factor(5) == pytest.approx(0.5)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    assert lin.apply(opt, 5) == pytest.approx(1.0) and opt.param_groups[0]["lr"] == pytest.approx(1.0)


def test_plateau_reduces_after_patience_and_resumes_exactly():
    s = LRSchedule(OptimConfig(lr=1.0, scheduler="plateau", plateau_patience=2, plateau_factor=0.5), 100)
    for loss in (1.0, 0.9, 0.95, 0.95):
        s.observe(loss)
    assert s.factor(10) == 1.0  # two bad epochs = patience, not yet beyond it
    s.observe(0.95)
    assert s.factor(10) == 0.5
    again = LRSchedule(OptimConfig(lr=1.0, scheduler="plateau", plateau_patience=2, plateau_factor=0.5), 1)
    again.load_state_dict(s.state_dict())
    assert again.factor(10) == 0.5 and again.state_dict() == s.state_dict()


def test_ema_update_and_swap():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 0.0]]))
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], torch.tensor([[1.2, 1.8]]))
    with ema.applied(model):
        torch.testing.assert_close(model.weight.detach(), torch.tensor([[1.2, 1.8]]))
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[3.0, 0.0]]))
