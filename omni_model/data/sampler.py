"""Per-task sampling: which training graphs make up each global batch.

Each draw first picks a task with probability p_T, then a graph of that task uniformly.
p_T is proportional to the task's size, to size^(1/temperature), or given explicitly; a bridging
task can be pinned to a fixed fraction of every batch. The sampler draws the *global* batch
(batch_size x world_size) from one seeded generator, so every rank agrees and a checkpoint of the
generator state resumes the exact sequence; rank r takes slice r.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["task_probabilities", "TaskSampler"]


def task_probabilities(
    counts: dict[str, int],
    mode: str = "proportional",
    temperature: float = 1.0,
    weights: dict[str, float] | None = None,
    bridge_task: str = "",
    bridge_weight: float = 0.0,
) -> dict[str, float]:
    """p_T for every task with at least one graph; sums to 1."""
    tasks = [t for t, n in counts.items() if n > 0]
    if not tasks:
        raise ValueError("no training graphs for any task")
    if mode == "weights" or weights:
        weights = weights or {}
        unknown = sorted(set(weights) - set(counts))
        if unknown:
            raise ValueError(f"sampling weights name unknown tasks {unknown}; known: {sorted(counts)}")
        raw = {t: float(weights.get(t, 0.0)) for t in tasks}
    elif mode == "temperature":
        raw = {t: counts[t] ** (1.0 / temperature) for t in tasks}
    elif mode == "proportional":
        raw = {t: float(counts[t]) for t in tasks}
    else:
        raise ValueError(f"unknown sampling mode {mode!r}")
    if bridge_task and bridge_weight > 0:
        if bridge_task not in tasks:
            raise ValueError(f"bridge task {bridge_task!r} has no training graphs")
        rest = {t: w for t, w in raw.items() if t != bridge_task}
        total = sum(rest.values())
        probs = {t: (1.0 - bridge_weight) * w / total for t, w in rest.items()} if total > 0 else {}
        probs[bridge_task] = bridge_weight if total > 0 else 1.0
        return probs
    total = sum(raw.values())
    if total <= 0:
        raise ValueError("sampling weights are all zero")
    return {t: w / total for t, w in raw.items()}


class TaskSampler:
    """Draws global batches of dataset positions with per-task probabilities (resumable)."""

    def __init__(
        self,
        task_of: np.ndarray,
        task_names: list[str],
        probs: dict[str, float],
        batch_size: int,
        seed: int = 0,
        world_size: int = 1,
    ) -> None:
        self.batch_size = int(batch_size)
        self.world_size = int(world_size)
        self.by_task = [np.flatnonzero(task_of == i) for i in range(len(task_names))]
        self.names = list(task_names)
        self.p = np.array([probs.get(t, 0.0) for t in task_names], dtype=np.float64)
        empty = [t for t, idx, p in zip(task_names, self.by_task, self.p) if p > 0 and len(idx) == 0]
        if empty:
            raise ValueError(f"tasks {empty} have sampling weight but no graphs")
        self.p = self.p / self.p.sum()
        self.rng = np.random.default_rng(seed)

    def global_batch(self) -> np.ndarray:
        """Positions of the next batch_size x world_size graphs."""
        n = self.batch_size * self.world_size
        tasks = self.rng.choice(len(self.p), size=n, p=self.p)
        out = np.empty(n, dtype=np.int64)
        for t in np.unique(tasks):
            sel = tasks == t
            out[sel] = self.by_task[t][self.rng.integers(0, len(self.by_task[t]), size=int(sel.sum()))]
        return out

    def next_batch(self, rank: int = 0) -> np.ndarray:
        """This rank's share of the next global batch."""
        g = self.global_batch()
        return g[rank * self.batch_size : (rank + 1) * self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
