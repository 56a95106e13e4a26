"""The training loop: curriculum stages of per-task sampled batches, AdamW with the θ_T/θ_C split,
selective regularization, clipping, EMA, per-task validation each epoch, CSV logs, checkpoints
with exact resume, and gradient summation across DDP ranks."""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config, StageConfig
from ..data.graph import collate
from ..data.sampler import TaskSampler, task_probabilities
from . import checkpoint as ck
from .ddp import DistInfo, all_reduce_sum, init_distributed, sum_gradients
from .ema import EMA
from .loss import compute_loss, label_counts, task_weight_table
from .optim import LRSchedule
from .progress import ConsoleProgress, ProgressFn, TrainProgress, progress_at
from .regularization import optimizer_groups, task_l2
from .setup import Prepared, log, model_dtype, prepare
from .validate import evaluate, format_errors

__all__ = ["Stage", "resolve_stages", "Trainer", "train"]

TRAIN_COLUMNS = ["step", "stage", "epoch", "lr", "loss", "energy", "forces", "stress", "task_l2", "seconds"]
VALID_COLUMNS = ["step", "stage", "epoch", "task", "n", "energy_mae_per_atom", "forces_mae", "stress_mae"]


@dataclass
class Stage:
    """A resolved curriculum stage: sampling probabilities and length in steps."""

    name: str
    probs: dict[str, float]
    steps: int
    steps_per_epoch: int


def resolve_stages(cfg: Config, prep: Prepared, world_size: int) -> list[Stage]:
    """Stages from ``cfg.stages`` (or one stage of run.epochs over every task)."""
    names = prep.model.tasks
    counts_all = {t: int((prep.train.task == i).sum()) for i, t in enumerate(names)}
    raw = cfg.stages or [StageConfig(name="main", epochs=cfg.run.epochs)]
    out = []
    for st in raw:
        unknown = sorted(set(st.tasks) - set(names))
        if unknown:
            raise ValueError(f"stage {st.name!r}: unknown tasks {unknown}; model tasks: {names}")
        counts = {t: n for t, n in counts_all.items() if not st.tasks or t in st.tasks}
        s = cfg.sampling
        probs = task_probabilities(
            counts,
            s.mode,
            s.temperature,
            st.weights or s.weights or None,
            s.bridge_task if s.bridge_task in counts else "",
            s.bridge_weight,
        )
        per_epoch = max(1, math.ceil(sum(counts.values()) / (cfg.data.batch_size * world_size)))
        out.append(Stage(st.name, probs, st.steps or st.epochs * per_epoch, per_epoch))
    return out


class Trainer:
    """Holds model, optimizer, schedule, EMA and sampler; ``run()`` trains to the end."""

    def __init__(
        self,
        cfg: Config,
        dist: DistInfo | None = None,
        init_checkpoint: dict | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        """``progress``: called with a ``TrainProgress`` every ``run.log_every`` steps and at the
        last step, on the main rank (besides the console display that ``run.progress`` turns on)."""
        self.progress = progress
        self.dist = dist or init_distributed()
        torch.manual_seed(cfg.run.seed)
        np.random.seed(cfg.run.seed)
        if init_checkpoint is None and cfg.run.init_from:
            init_checkpoint = ck.load_checkpoint(cfg.run.init_from)
        self.prep = prepare(cfg, init_checkpoint)
        self.cfg = self.prep.cfg
        self.model = self.prep.model
        self.device = self._device()
        self.model.to(self.device)
        self.dtype = model_dtype(self.cfg)
        self.out = Path(self.cfg.run.out_dir)
        o = self.cfg.optim
        self.optimizer = torch.optim.AdamW(
            optimizer_groups(self.model, o.weight_decay_task, o.weight_decay_shared), lr=o.lr, betas=tuple(o.betas)
        )
        self.stages = resolve_stages(self.cfg, self.prep, self.dist.world_size)
        self.total_steps = sum(s.steps for s in self.stages)
        self.schedule = LRSchedule(o, self.total_steps)
        self.ema = EMA(self.model, o.ema_decay) if o.ema_decay > 0 else None
        self.task_w = task_weight_table(self.cfg.loss, self.model.tasks)
        self.step = 0
        self.stage_index = 0
        self.stage_step = 0
        self.sampler = self._sampler(0)
        self.history: list[dict[str, float]] = []

    # ---- setup helpers ----------------------------------------------------------------------
    def _device(self) -> torch.device:
        want = self.cfg.run.device
        if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
            return torch.device("cuda", self.dist.local_rank)
        return torch.device("cpu")

    def _sampler(self, k: int) -> TaskSampler:
        st = self.stages[k]
        return TaskSampler(
            self.prep.train.task,
            self.model.tasks,
            st.probs,
            self.cfg.data.batch_size,
            seed=self.cfg.run.seed + 1000 * k,
            world_size=self.dist.world_size,
        )

    # ---- one step ---------------------------------------------------------------------------
    def train_step(self, graphs) -> dict[str, float]:
        """Forward, loss (global label counts), backward, all-reduce, clip, AdamW, EMA."""
        self.model.train()
        batch = collate(graphs, dtype=self.dtype).to(self.device)
        counts = all_reduce_sum(label_counts(batch).to(self.device))
        lr = self.schedule.apply(self.optimizer, self.step)
        use_bf16 = self.cfg.run.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            pred = self.model(batch, forces=True, stress=bool(counts[2] > 0))
        pred = {k: v.float() if use_bf16 else v for k, v in pred.items()}
        losses = compute_loss(pred, batch, self.cfg.loss, self.task_w, counts)
        reg = task_l2(self.model, self.cfg.loss.task_l2) / self.dist.world_size
        self.optimizer.zero_grad(set_to_none=True)
        (losses["total"] + reg).backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        sum_gradients(params)
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        vals = torch.stack(
            [
                losses["total"].detach(),
                losses["energy"].detach(),
                losses["forces"].detach(),
                losses["stress"].detach(),
                reg.detach(),
            ]
        ).double()
        vals = all_reduce_sum(vals)  # each rank holds its share of the global mean
        loss, e, f, s, r = (float(v) for v in vals)
        return {"step": self.step, "lr": lr, "loss": loss + r, "energy": e, "forces": f, "stress": s, "task_l2": r}

    # ---- validation, logs, checkpoints ------------------------------------------------------
    def validate(self) -> dict[str, dict[str, float]]:
        if len(self.prep.valid) == 0:
            return {}
        ctx = self.ema.applied(self.model) if self.ema is not None else _null()
        with ctx:
            return evaluate(
                self.model, self.prep.valid, self.model.tasks, self.cfg.data.valid_batch_size, self.device, self.dtype
            )

    def _append_csv(self, name: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
        if not self.dist.is_main or not rows:
            return
        path = self.out / name
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)

    def _trim_csv(self, name: str, step: int) -> None:
        """After a resume, drop rows logged past the checkpoint (they will be redone)."""
        path = self.out / name
        if not self.dist.is_main or not path.exists():
            return
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
            cols = TRAIN_COLUMNS if name == "train.csv" else VALID_COLUMNS
        tmp = path.with_name(f".{name}.tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)

    def state(self) -> dict[str, Any]:
        """Everything exact resume needs, in weights_only-safe types."""
        return {
            "format": "omni-checkpoint-1",
            "config": self.cfg.to_dict(),
            "references": ck.references_to_json(self.prep.references),
            "references_source": self.prep.references_source,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "sampler": ck.encode_sampler_state(self.sampler.state_dict()),
            "rng": ck.rng_state(),
            "progress": {"step": self.step, "stage_index": self.stage_index, "stage_step": self.stage_step},
        }

    def save(self, name: str = "checkpoint-last.pt") -> Path | None:
        if not self.dist.is_main:
            return None
        return ck.save_checkpoint(self.out / name, self.state())

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.ema is not None and state["ema"]:
            self.ema.load_state_dict(state["ema"])
        p = state["progress"]
        self.step, self.stage_index, self.stage_step = p["step"], p["stage_index"], p["stage_step"]
        if self.stage_index < len(self.stages):
            self.sampler = self._sampler(self.stage_index)
            self.sampler.load_state_dict(ck.decode_sampler_state(state["sampler"]))
        ck.set_rng_state(state["rng"])

    def maybe_resume(self) -> bool:
        path = self.out / "checkpoint-last.pt"
        if not (self.cfg.run.resume and path.is_file()):
            return False
        self.load_state(ck.load_checkpoint(path, self.device))
        self._trim_csv("train.csv", self.step)
        self._trim_csv("valid.csv", self.step)
        log.info("resumed from %s at step %d", path, self.step)
        return True

    # ---- the loop ---------------------------------------------------------------------------
    def run(self, max_steps: int | None = None) -> dict[str, dict[str, float]]:
        """Train through every stage (or stop after ``max_steps`` total steps); returns the
        last validation errors."""
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.maybe_resume()
        console = ConsoleProgress(self.total_steps, self.step) if self.cfg.run.progress and self.dist.is_main else None
        errors: dict[str, dict[str, float]] = {}
        pending: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        first_step = self.step
        while self.stage_index < len(self.stages):
            st = self.stages[self.stage_index]
            while self.stage_step < st.steps:
                if max_steps is not None and self.step >= max_steps:
                    self._append_csv("train.csv", TRAIN_COLUMNS, pending)
                    if console is not None:
                        console.close()
                    return errors
                ks = self.sampler.next_batch(self.dist.rank)
                rec = self.train_step(self.prep.train.graphs(ks))
                self.stage_step += 1
                rec.update(stage=st.name, epoch=self.stage_step / st.steps_per_epoch, seconds=time.perf_counter() - t0)
                self.history.append(rec)
                pending.append(rec)
                self._report(
                    progress_at(self.step, first_step, self.total_steps, st.name, rec["loss"], rec["seconds"]), console
                )
                if len(pending) >= self.cfg.run.log_every:
                    self._append_csv("train.csv", TRAIN_COLUMNS, pending)
                    pending = []
                if self.stage_step % st.steps_per_epoch == 0 or self.stage_step == st.steps:
                    errors = self._end_of_epoch(st)
                if self.cfg.run.checkpoint_every and self.step % self.cfg.run.checkpoint_every == 0:
                    self._append_csv("train.csv", TRAIN_COLUMNS, pending)
                    pending = []
                    self.save()
            self.stage_index += 1
            self.stage_step = 0
            if self.stage_index < len(self.stages):
                self.sampler = self._sampler(self.stage_index)
        self._append_csv("train.csv", TRAIN_COLUMNS, pending)
        if console is not None:
            console.close()
        self.save()
        self.save("final.pt")
        return errors

    def _report(self, report: TrainProgress, console: ConsoleProgress | None) -> None:
        """Show ``report`` on the console and pass it to the ``progress`` callback (main rank)."""
        if not self.dist.is_main:
            return
        every = self.cfg.run.log_every
        if console is not None:
            console.step(report, every)
        if self.progress is not None and (report.step % max(every, 1) == 0 or report.step >= report.total):
            self.progress(report)

    def _end_of_epoch(self, st: Stage) -> dict[str, dict[str, float]]:
        errors = self.validate()
        epoch = self.stage_step // st.steps_per_epoch
        rows = [{"step": self.step, "stage": st.name, "epoch": epoch, "task": t, **e} for t, e in errors.items()]
        self._append_csv("valid.csv", VALID_COLUMNS, rows)
        if errors:
            mean = float(np.nanmean([e["energy_mae_per_atom"] + e["forces_mae"] for e in errors.values()]))
            self.schedule.observe(mean)
            if self.dist.is_main:
                log.info("stage %s epoch %d step %d\n%s", st.name, epoch, self.step, format_errors(errors))
        return errors


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def train(cfg: Config, progress: ProgressFn | None = None) -> Trainer:
    """Build a Trainer from ``cfg``, run it, and return it (history, model, errors); ``progress``
    gets a ``TrainProgress`` every ``run.log_every`` steps (see ``Trainer``)."""
    trainer = Trainer(cfg, progress=progress)
    trainer.run()
    return trainer
