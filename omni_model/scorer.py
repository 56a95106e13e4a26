"""A selection scorer from an ``omni_model`` checkpoint, for ``select-bridge --strategy error|hybrid``.

Why here: ``omni_data`` never imports ``omni_model`` (data flows to the model, never back), so the
model-based scorer is built on the model side and passed in by the face (the CLI).
"""

from __future__ import annotations

from pathlib import Path

from omni_data.select.strategies import Scorer, calculator_scorer

__all__ = ["model_scorer"]


def model_scorer(checkpoint: str, device: str = "cpu") -> Scorer:
    """Errors of an ``omni_model`` checkpoint, each record scored with its own task head."""
    from omni_model.calculator import OmniCalculator

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"model checkpoint {checkpoint} not found")
    return calculator_scorer(lambda task: OmniCalculator(checkpoint, task=task, device=device))
