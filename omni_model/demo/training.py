"""The demo's model stages: train one run with the ``small`` preset, and evaluate its checkpoint.

Training goes through ``omni_model.train.trainer.Trainer`` (what ``omni-train train`` runs),
with a progress line every tenth of the steps on the console (``omni_model.demo.progress``, the
trainer's ``progress`` callback).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from omni_model.demo.layout import COMMON_TASK, DemoLayout
from omni_model.demo.stages import StageFailed, require

__all__ = ["run_dir", "preset_digest", "train_config", "stage_train", "training_loss", "stage_evaluate"]

TRAIN_STEPS = {"ci": 200, "small": 1000}
"""Optimizer steps per training run (batch size 8); 1,000 is what the transfer sweep
(docs/transfer-sweep.md) measured and chose on."""
SEEDS = {"ci": 1, "small": 3}
"""Training seeds per variant by default: the ``small`` report gives mean ± std over three."""
TASK_L2 = 1e-4
"""λ of the selective regularization ‖θ_T‖² on task-specific parameters only (runs 2 and 3); the
``small`` preset's default. Its penalty is part of the logged training loss."""
BRIDGE_L2 = 0.0
"""λ of the bridged run: the value the transfer sweep chose on validation rows (docs/transfer-sweep.md:
every λ > 0 measured made transfer worse at this size)."""
RUN_L2 = {"plain": 0.0, "regularized": TASK_L2, "bridged": BRIDGE_L2}
"""λ per demo run; runs of other names (the ablation's) set it explicitly."""
TASKS = ["metals", "crystals", "molecules"]


def run_dir(lay: DemoLayout, run: str, k: int) -> Path:
    """``runs/<run>`` for the first seed, ``runs/<run>-seed<k>`` for the k-th further one."""
    return lay.run(run) if k == 0 else lay.run(f"{run}-seed{k}")


def preset_digest() -> str:
    """Hash of the ``small`` preset file: part of each training stage's fingerprint."""
    from omni_model.config import PRESETS_DIR

    return hashlib.sha256((PRESETS_DIR / "small.yaml").read_bytes()).hexdigest()[:16]


def train_config(
    lay: DemoLayout,
    run: str,
    size: str,
    seed: int,
    k: int = 0,
    bridge: bool | None = None,
    task_l2: float | None = None,
    steps: int | None = None,
    store: Path | None = None,
    task_weights: dict[str, float] | None = None,
) -> Path:
    """The omni-train YAML of one run: the ``small`` preset with the demo's store and settings.

    ``bridge``, ``task_l2`` and ``steps`` default to what the run name implies (the three demo
    runs); the ablation (``omni_model.demo.ablation``) sets them explicitly, and its sweep also
    ``store`` (a training store other than the folder's, e.g. a bridge of another fraction) and
    ``task_weights`` (``sampling.mode: weights``: per-task draw weights). ``run.resume`` is on:
    an interrupted demo continues a training from its last checkpoint.
    """
    from omni_model.config import PRESETS_DIR, config_from_dict

    cfg: dict[str, Any] = yaml.safe_load((PRESETS_DIR / "small.yaml").read_text()) or {}
    if store is None:
        store = lay.store("train_bridge" if (run == "bridged" if bridge is None else bridge) else "train")
    cfg.setdefault("model", {})["tasks"] = TASKS
    cfg.setdefault("data", {}).update(store=str(store), tasks=TASKS, batch_size=8)
    cfg.setdefault("loss", {})["task_l2"] = RUN_L2.get(run, TASK_L2) if task_l2 is None else task_l2
    cfg.setdefault("run", {}).update(
        out_dir=str(run_dir(lay, run, k)), seed=seed + k, device="cpu", progress=False, resume=True
    )
    if task_weights:
        cfg["sampling"] = {"mode": "weights", "weights": {t: float(w) for t, w in task_weights.items()}}
    cfg["stages"] = [{"name": "all", "tasks": TASKS, "steps": steps or TRAIN_STEPS[size]}]
    path = run_dir(lay, run, k) / "train.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config_from_dict(cfg, str(path))  # validate before writing
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def _console(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def stage_train(
    lay: DemoLayout,
    run: str,
    size: str,
    seed: int,
    k: int = 0,
    resume: bool = False,
    progress: Callable[[str], None] = _console,
    label: str = "",
    **overrides: Any,
) -> dict[str, Any]:
    """Train one run (training seed ``seed + k``); returns its config, final checkpoint and loss curve.

    ``resume``: continue from the run folder's last checkpoint when there is one (else start
    over); without it the run folder is cleared first. ``progress`` gets a line every tenth of
    the steps. ``overrides``: ``train_config``'s bridge, task_l2, steps, store, task_weights.
    """
    require("omni_model.train.trainer")  # torch and e3nn, or this stage is unavailable
    from omni_model.config import load_config, validate
    from omni_model.demo.progress import TrainingProgress
    from omni_model.threads import set_threads
    from omni_model.train.trainer import Trainer

    set_threads()  # $OMP_NUM_THREADS or 1, as omni-train (issue 20.8)
    folder = run_dir(lay, run, k)
    if folder.exists() and not (resume and (folder / "checkpoint-last.pt").is_file()):
        shutil.rmtree(folder)  # no checkpoint to continue from: its logs would be appended to
    config = train_config(lay, run, size, seed, k, **overrides)
    print(f"omni-train train {config}", flush=True)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the trainer's epoch lines, as omni-train
    cfg = validate(load_config(config), str(config))
    trainer = Trainer(cfg, progress=TrainingProgress(label or f"train_{run}", progress))
    trainer.run()
    checkpoint = folder / "final.pt"  # the trainer's end-of-run checkpoint
    if not checkpoint.is_file():
        raise StageFailed(f"training wrote no {checkpoint}")
    return {
        "config": str(config),
        "checkpoint": str(checkpoint),
        "steps": trainer.step,
        "loss": training_loss(folder / "train.csv"),
    }


def training_loss(csv_path: Path) -> list[list[float]]:
    """(step, training loss) pairs from the trainer's ``train.csv`` log."""
    import csv

    if not csv_path.is_file():
        raise StageFailed(f"omni-train wrote no training log {csv_path}")
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "step" not in rows[0] or "loss" not in rows[0]:
        raise StageFailed(f"{csv_path}: expected columns step and loss, got {list(rows[0]) if rows else 'no rows'}")
    return [[float(r["step"]), float(r["loss"])] for r in rows if r.get("loss") not in (None, "")]


def stage_evaluate(lay: DemoLayout, run: str, checkpoint: str, with_truth: bool) -> dict[str, Any]:
    """Same-domain rows on ``stores/test``; cross-domain rows on ``stores/test_truth`` if it exists."""
    require("omni_model.calculator")
    from omni_data.store import Store
    from omni_model.demo.evaluate import (
        cross_domain_rows,
        omni_predictor,
        same_domain_rows,
    )

    predict = omni_predictor(Path(checkpoint))
    rows = same_domain_rows(Store(lay.store("test")), predict)
    if with_truth:
        rows += cross_domain_rows(Path(checkpoint), lay.store("test_truth"), COMMON_TASK)
    return {"rows": rows}
