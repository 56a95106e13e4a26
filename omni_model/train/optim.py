"""Learning-rate schedule as a function of the step (warmup, then cosine / linear decay), plus
a plateau rule driven by validation loss. Its whole state is two numbers, so resume is exact."""

from __future__ import annotations

import math
from typing import Any

from ..config import OptimConfig

__all__ = ["LRSchedule"]


class LRSchedule:
    """lr(step) = base · warmup(step) · decay(step) · plateau_factor."""

    def __init__(self, cfg: OptimConfig, total_steps: int) -> None:
        self.cfg = cfg
        self.total = max(int(total_steps), 1)
        self.plateau_scale = 1.0
        self.best = math.inf
        self.bad = 0

    def factor(self, step: int) -> float:
        c = self.cfg
        warm = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps > 0 else 1.0
        t = min(max(step - c.warmup_steps, 0) / max(self.total - c.warmup_steps, 1), 1.0)
        if c.scheduler == "cosine":
            decay = c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        elif c.scheduler == "linear":
            decay = 1.0 - (1.0 - c.min_lr_ratio) * t
        else:
            decay = 1.0
        return warm * decay * self.plateau_scale

    def apply(self, optimizer, step: int) -> float:
        lr = self.cfg.lr * self.factor(step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr

    def observe(self, valid_loss: float) -> None:
        """Plateau rule: scale the lr by plateau_factor after plateau_patience bad epochs."""
        if self.cfg.scheduler != "plateau":
            return
        if valid_loss < self.best:
            self.best, self.bad = valid_loss, 0
        else:
            self.bad += 1
            if self.bad > self.cfg.plateau_patience:
                self.plateau_scale *= self.cfg.plateau_factor
                self.bad = 0

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "bad": self.bad, "total": self.total}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.plateau_scale, self.best, self.bad, self.total = s["plateau_scale"], s["best"], s["bad"], s["total"]
