"""omni-train's configuration: typed dataclasses, validated once at the edge.

Every key and its default lives here and only here; docs/train-config.md documents them.
``load_config(path)`` reads YAML through ``omni_data.typedconfig`` (the one typed-YAML helper),
rejects unknown keys and wrong types with one ``ValueError`` naming the file and every bad key,
and returns a ``Config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ModelConfig",
    "DataConfig",
    "SamplingConfig",
    "TaskLossWeights",
    "LossConfig",
    "OptimConfig",
    "StageConfig",
    "RunConfig",
    "Config",
    "from_dict",
    "validate",
    "config_from_dict",
    "load_config",
    "list_presets",
]

PRESETS_DIR = Path(str(resources.files("omni_model") / "presets"))  # package data (docs/packaging.md)


@dataclass
class ModelConfig:
    """Architecture (NequIP / SevenNet style) and which layers see the task one-hot."""

    cutoff: float = 5.0
    channels: int = 32
    lmax: int = 2
    num_layers: int = 3
    parity: bool = True
    halve_channels: bool = True
    num_basis: int = 8
    cutoff_p: int = 6
    radial_hidden: list[int] = field(default_factory=lambda: [64, 64])
    readout_hidden: int = 0
    avg_num_neighbors: float = 0.0
    elements: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    task_embedding: bool = False
    task_intro: bool = True
    task_outro: bool = True
    task_readout: bool = True
    train_shift_scale: bool = True


@dataclass
class DataConfig:
    """Where structures come from and how they are split."""

    store: str | list[str] = ""  # one store path, or a list read as one (omni_data.store.StoreSet)
    tasks: list[str] = field(default_factory=list)
    valid_split: str = "val"
    train_split: str = "train"
    valid_fraction: float = 0.05
    batch_size: int = 8
    valid_batch_size: int = 16
    max_structures: int = 0
    graph_cache: bool = True


@dataclass
class SamplingConfig:
    """How often each task is drawn (temperature 1 = proportional to its size)."""

    mode: Literal["proportional", "temperature", "weights"] = "proportional"
    temperature: float = 1.0
    weights: dict[str, float] = field(default_factory=dict)
    bridge_task: str = ""
    bridge_weight: float = 0.0


@dataclass
class TaskLossWeights:
    energy: float = 1.0
    forces: float = 1.0
    stress: float = 1.0


@dataclass
class LossConfig:
    """Per-label weights (global times per-task) and the loss function."""

    kind: Literal["huber", "mse"] = "huber"
    huber_delta: float = 0.01
    energy_weight: float = 1.0
    forces_weight: float = 1.0
    stress_weight: float = 0.01
    per_task: dict[str, TaskLossWeights] = field(default_factory=dict)
    task_l2: float = 0.0


@dataclass
class OptimConfig:
    """AdamW, learning-rate schedule, clipping, EMA."""

    lr: float = 5e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay_task: float = 0.0
    weight_decay_shared: float = 0.0
    scheduler: Literal["none", "cosine", "linear", "plateau"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    grad_clip: float = 10.0
    ema_decay: float = 0.0


@dataclass
class StageConfig:
    """One curriculum stage: which tasks, their sampling weights, how long."""

    name: str = "main"
    tasks: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    epochs: int = 0
    steps: int = 0


@dataclass
class RunConfig:
    """Everything about the run itself (device, precision, output, checkpoints)."""

    out_dir: str = "omni-run"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "fp64", "bf16"] = "fp32"
    epochs: int = 10
    checkpoint_every: int = 100
    log_every: int = 10
    progress: bool = True
    resume: bool = True
    init_from: str = ""


@dataclass
class Config:
    """The whole omni-train YAML file."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    stages: list[StageConfig] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (what checkpoints store)."""
        return dataclasses.asdict(self)


def from_dict(cls: type, data: dict[str, Any], source: str = "<dict>", prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data`` (``omni_data.typedconfig``); every unknown key and bad
    value is reported in one ValueError naming the file and the keys."""
    from omni_data.typedconfig import from_mapping

    return from_mapping(cls, data or {}, source, ValueError, prefix)


def validate(cfg: Config, source: str = "<config>") -> Config:
    """Cross-field checks that types alone cannot express."""
    m, o = cfg.model, cfg.optim
    checks = [
        (m.cutoff > 0, "model.cutoff", "must be > 0"),
        (m.channels > 0, "model.channels", "must be > 0"),
        (0 <= m.lmax <= 6, "model.lmax", "must be in 0..6"),
        (m.num_layers >= 1, "model.num_layers", "must be >= 1"),
        (cfg.data.batch_size >= 1, "data.batch_size", "must be >= 1"),
        (0 <= cfg.data.valid_fraction < 1, "data.valid_fraction", "must be in [0, 1)"),
        (o.lr > 0, "optim.lr", "must be > 0"),
        (0 <= o.ema_decay < 1, "optim.ema_decay", "must be in [0, 1)"),
        (cfg.loss.task_l2 >= 0, "loss.task_l2", "must be >= 0"),
        (cfg.sampling.temperature > 0, "sampling.temperature", "must be > 0"),
        (len(o.betas) == 2, "optim.betas", "must have two values"),
    ]
    stores = [cfg.data.store] if isinstance(cfg.data.store, str) else list(cfg.data.store)
    checks.append(
        (
            isinstance(cfg.data.store, str) or (bool(stores) and all(stores)),
            "data.store",
            "must be a store path or a non-empty list of non-empty paths",
        )
    )
    checks.append((len(set(stores)) == len(stores), "data.store", "lists one store twice"))
    checks += [
        ((st.epochs > 0) != (st.steps > 0), f"stages[{i}]", "needs exactly one of epochs or steps > 0")
        for i, st in enumerate(cfg.stages)
    ]
    problems = [f"key '{key}' {msg}" for ok, key, msg in checks if not ok]
    if problems:  # every cross-field problem at once, like the per-key ones
        raise ValueError(f"{source}: " + "; ".join(problems))
    return cfg


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Validated ``Config`` from a plain dict (e.g. the one stored in a checkpoint)."""
    return validate(from_dict(Config, data, source), source)


def load_config(path: str | Path) -> Config:
    """Read and validate an omni-train YAML file (a preset name also works, see presets/)."""
    from omni_data.yamlfile import load_yaml

    p = Path(path)
    if not p.exists() and (PRESETS_DIR / f"{path}.yaml").exists():
        p = PRESETS_DIR / f"{path}.yaml"
    data = load_yaml(p, ValueError) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: top level must be a mapping")
    return config_from_dict(data, str(p))


def list_presets() -> list[str]:
    """Names of the packaged presets (the YAML files in presets/)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
