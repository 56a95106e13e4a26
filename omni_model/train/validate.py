"""Per-task validation errors: energy per atom, force component and stress component MAE."""

from __future__ import annotations

import numpy as np

from ..data.graph import collate

__all__ = ["evaluate", "format_errors"]

METRICS = ("energy_mae_per_atom", "forces_mae", "stress_mae")


def evaluate(
    model, dataset, tasks: list[str], batch_size: int = 16, device=None, dtype=None
) -> dict[str, dict[str, float]]:
    """{task: {metric: value, "n": graphs}}; a metric is NaN where no label exists."""
    dtype = dtype or next(model.parameters()).dtype
    device = device or next(model.parameters()).device
    sums = np.zeros((len(tasks), 3))
    counts = np.zeros((len(tasks), 3))
    n_graphs = np.zeros(len(tasks), dtype=np.int64)
    was_training = model.training
    model.eval()
    for start in range(0, len(dataset), batch_size):
        graphs = dataset.graphs(range(start, min(start + batch_size, len(dataset))))
        b = collate(graphs, dtype=dtype).to(device)
        out = model(b, forces=True, stress=bool(b.stress_mask.any()))
        t = b.task.cpu().numpy()
        np.add.at(n_graphs, t, 1)
        e_err = ((out["energy"].detach() - b.energy) / b.n_atoms).abs().cpu().numpy()
        em = b.energy_mask.cpu().numpy()
        np.add.at(sums[:, 0], t[em], e_err[em])
        np.add.at(counts[:, 0], t[em], 1)
        fm = b.forces_mask.cpu().numpy()
        f_err = (out["forces"].detach() - b.forces).abs().sum(dim=1).cpu().numpy()
        at = t[b.batch.cpu().numpy()]
        np.add.at(sums[:, 1], at[fm], f_err[fm])
        np.add.at(counts[:, 1], at[fm], 3)
        if "stress" in out:
            sm = b.stress_mask.cpu().numpy()
            s_err = (out["stress"].detach() - b.stress).abs().sum(dim=1).cpu().numpy()
            np.add.at(sums[:, 2], t[sm], s_err[sm])
            np.add.at(counts[:, 2], t[sm], 6)
    model.train(was_training)
    with np.errstate(invalid="ignore", divide="ignore"):
        mae = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return {
        task: {**{m: float(mae[i, j]) for j, m in enumerate(METRICS)}, "n": int(n_graphs[i])}
        for i, task in enumerate(tasks)
        if n_graphs[i] > 0
    }


def format_errors(errors: dict[str, dict[str, float]]) -> str:
    """A small fixed-width table (meV/atom, meV/Å, meV/Å³)."""
    lines = [f"{'task':<16}{'n':>7}{'E meV/atom':>13}{'F meV/Å':>11}{'S meV/Å³':>11}"]
    for task, e in errors.items():
        lines.append(
            f"{task:<16}{e['n']:>7}{1000 * e['energy_mae_per_atom']:>13.2f}"
            f"{1000 * e['forces_mae']:>11.2f}{1000 * e['stress_mae']:>11.3f}"
        )
    return "\n".join(lines)
