"""Checkpoints: everything needed for exact resume, loadable with torch.load(weights_only=True).

The config travels as a plain dict, references as {task: {"Z": μ}} with string keys, the sampler
and RNG states as tensors/ints/strings. Writes go to a temp name and are moved with os.replace.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config, config_from_dict

__all__ = [
    "rng_state",
    "set_rng_state",
    "encode_sampler_state",
    "decode_sampler_state",
    "references_to_json",
    "references_from_json",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
]


def rng_state() -> dict[str, Any]:
    """torch, numpy and python RNG states in weights_only-safe types."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": repr(random.getstate()),
    }


def set_rng_state(s: dict[str, Any]) -> None:
    import ast

    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(ast.literal_eval(s["python"]))


def encode_sampler_state(state: dict[str, Any]) -> dict[str, Any]:
    """numpy bit-generator state has 128-bit ints: store them as decimal strings."""
    st = state["rng"]
    return {
        "bit_generator": st["bit_generator"],
        "state": str(st["state"]["state"]),
        "inc": str(st["state"]["inc"]),
        "has_uint32": int(st["has_uint32"]),
        "uinteger": int(st["uinteger"]),
    }


def decode_sampler_state(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "rng": {
            "bit_generator": s["bit_generator"],
            "state": {"state": int(s["state"]), "inc": int(s["inc"])},
            "has_uint32": s["has_uint32"],
            "uinteger": s["uinteger"],
        }
    }


def references_to_json(refs: dict[str, dict[int, float]]) -> dict[str, dict[str, float]]:
    return {t: {str(z): float(v) for z, v in r.items()} for t, r in refs.items()}


def references_from_json(refs: dict[str, dict[str, float]]) -> dict[str, dict[int, float]]:
    return {t: {int(z): float(v) for z, v in r.items()} for t, r in refs.items()}


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomic torch.save of ``payload`` (temp file in the same folder, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True; a clear error naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        raise ValueError(f"{path}: not a loadable Omni checkpoint ({exc})") from exc


def load_model(path: str | Path, map_location: str | torch.device = "cpu", use_ema: bool = True):
    """(model, config, checkpoint dict) from a checkpoint; EMA weights when present."""
    from ..model import OmniModel

    ckpt = load_checkpoint(path, map_location)
    cfg: Config = config_from_dict(ckpt["config"], f"{path}[config]")
    model = OmniModel(cfg.model)
    model.load_state_dict(ckpt["model"])
    if use_ema and ckpt.get("ema"):
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(ckpt["ema"][k])
    model.eval()
    return model, cfg, ckpt
