"""A head on another domain's labels: raw errors, errors after per-element offsets, forces.

``structure_errors`` predicts each record of a store with one head (or its own task's head) and
keeps, per structure, the total-energy residual, the composition and the force error sums.
``transfer_rows`` groups the structures (by ``metadata["source_task"]`` where a record has one,
as collect-bridge writes it, else by task) and reports per (head, group):

* raw energy MAE / RMSE per atom;
* the same after per-element offsets fitted (``offsets.fit_offsets``) on a *calibration* split
  of the same group, disjoint from the test split; both splits and their sizes are in the row;
* force MAE / RMSE per component.

``evaluate_checkpoint`` is what ``omni-train evaluate`` and the demo call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .offsets import composition, fit_offsets, mae_rmse, remove_offsets

__all__ = [
    "StructureErrors",
    "record_group",
    "structure_errors",
    "transfer_row",
    "transfer_rows",
    "Evaluation",
    "evaluate_checkpoint",
    "format_evaluation",
    "SEED_NUMBERS",
    "seed_summary",
    "format_seed_summary",
]


@dataclass
class StructureErrors:
    """Per-structure errors of one head on a set of records (energies in eV, forces in eV/Å)."""

    head: list[str] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    numbers: list[np.ndarray] = field(default_factory=list)
    e_residual: list[float] = field(default_factory=list)  # E_pred - E_ref (NaN: no label)
    f_abs: list[float] = field(default_factory=list)  # Σ |ΔF| over components
    f_sq: list[float] = field(default_factory=list)  # Σ ΔF² over components
    f_n: list[int] = field(default_factory=list)  # components with a label

    def select(self, head: str, group: str) -> np.ndarray:
        return np.flatnonzero((np.asarray(self.head) == head) & (np.asarray(self.group) == group))


def record_group(record: Any) -> str:
    """The domain a record's labels describe: ``metadata["source_task"]`` if set, else its task."""
    return str((record.metadata or {}).get("source_task") or record.task)


def structure_errors(
    model,
    store,
    indices: Sequence[int],
    head: str | None = None,
    batch_size: int = 16,
    references: dict | None = None,
    where: str = "",
) -> StructureErrors:
    """Predict the records at ``indices`` with ``head`` (default: each record's own task) and
    collect per-structure errors. Warns once per head that predicted elements without a reference
    energy in its task (``MissingReferenceWarning``, naming them all)."""
    from ..data.graph import build_graph, collate, species_table
    from .references import warn_unreferenced

    table = species_table(model.elements)
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    out = StructureErrors()
    warned: set[tuple[str, int]] = set()
    was_training = model.training
    model.eval()
    idx = [int(i) for i in indices]
    for start in range(0, len(idx), batch_size):
        records = [store[i] for i in idx[start : start + batch_size]]
        graphs = []
        for rec in records:
            task = head or rec.task
            pbc = np.asarray(rec.pbc, dtype=bool)
            graphs.append(
                build_graph(
                    rec.numbers,
                    rec.positions,
                    rec.cell if pbc.any() else None,
                    pbc,
                    model.cfg.cutoff,
                    table,
                    task=model.task_index(task),
                    energy=rec.energy,
                    forces=rec.forces,
                    id=rec.id,
                )
            )
            out.head.append(task)
            out.group.append(record_group(rec))
            out.numbers.append(np.asarray(rec.numbers, dtype=np.int64))
        b = collate(graphs, dtype=dtype).to(device)
        pred = model(b, forces=True, stress=False)
        e = pred["energy"].detach().cpu().numpy().astype(float)
        ref = b.energy.cpu().numpy().astype(float)
        out.e_residual.extend(np.where(b.energy_mask.cpu().numpy(), e - ref, np.nan).tolist())
        diff = (pred["forces"].detach() - b.forces).cpu().numpy().astype(float)
        mask = b.forces_mask.cpu().numpy()
        graph_of = b.batch.cpu().numpy()
        for name, per_atom in (("f_abs", np.abs(diff).sum(1)), ("f_sq", (diff * diff).sum(1))):
            sums = np.zeros(len(graphs))
            np.add.at(sums, graph_of[mask], per_atom[mask])
            getattr(out, name).extend(sums.tolist())
        n = np.zeros(len(graphs), dtype=np.int64)
        np.add.at(n, graph_of[mask], 3)
        out.f_n.extend(n.tolist())
    model.train(was_training)
    if references is not None:  # one warning per head, naming every element it lacks
        for task in sorted(set(out.head)):
            zs = {int(z) for h, n in zip(out.head, out.numbers) if h == task for z in np.unique(n)}
            warn_unreferenced(references, task, sorted(zs), warned, where)
    return out


def _force_stats(err: StructureErrors, rows: np.ndarray) -> tuple[float, float]:
    n = float(np.sum(np.asarray(err.f_n)[rows])) if len(rows) else 0.0
    if n == 0:
        return float("nan"), float("nan")
    return (float(np.sum(np.asarray(err.f_abs)[rows]) / n), float(np.sqrt(np.sum(np.asarray(err.f_sq)[rows]) / n)))


def transfer_row(
    test: StructureErrors,
    test_rows: np.ndarray,
    calib: StructureErrors | None,
    calib_rows: np.ndarray,
    elements: Sequence[int],
) -> dict[str, Any]:
    """Raw, offset-aligned (fitted on ``calib_rows`` of ``calib``) and force errors of ``test_rows``."""
    zs = [int(z) for z in elements]
    res = np.asarray(test.e_residual, dtype=float)[test_rows]
    counts = composition([test.numbers[i] for i in test_rows], zs)
    n_atoms = counts.sum(axis=1)
    e_mae, e_rmse = mae_rmse(res / n_atoms)
    row: dict[str, Any] = {
        "n": int(len(test_rows)),
        "energy_mae": e_mae,
        "energy_rmse": e_rmse,
        "n_calibration": 0,
        "energy_mae_offset": None,
        "energy_rmse_offset": None,
        "offsets": {},
        "uncalibrated": [],
    }
    if calib is not None and len(calib_rows):
        fit = fit_offsets(
            np.asarray(calib.e_residual, dtype=float)[calib_rows],
            composition([calib.numbers[i] for i in calib_rows], zs),
            zs,
        )
        aligned = remove_offsets(res, counts, zs, fit) / n_atoms
        o_mae, o_rmse = mae_rmse(aligned)
        present = {int(z) for i in test_rows for z in np.unique(test.numbers[i])}
        row.update(
            n_calibration=fit.n_structures,
            energy_mae_offset=o_mae,
            energy_rmse_offset=o_rmse,
            offsets={str(z): v for z, v in fit.offsets.items()},
            uncalibrated=fit.uncalibrated(present),
        )
    row["forces_mae"], row["forces_rmse"] = _force_stats(test, test_rows)
    return row


def transfer_rows(
    test: StructureErrors,
    calib: StructureErrors | None,
    elements: Sequence[int],
    test_split: str,
    calibration_split: str,
) -> list[dict[str, Any]]:
    """One row per (head, group) of ``test``, offsets fitted on the same (head, group) of ``calib``."""
    rows = []
    for head, group in sorted(set(zip(test.head, test.group))):
        t = test.select(head, group)
        c = calib.select(head, group) if calib is not None else np.array([], dtype=np.int64)
        row = {
            "head": head,
            "data": group,
            "test_split": test_split,
            "calibration_split": calibration_split if len(c) else None,
        }
        row.update(transfer_row(test, t, calib, c, elements))
        rows.append(row)
    return rows


@dataclass
class Evaluation:
    """What ``omni-train evaluate`` prints: rows per (head, group) and what was compared."""

    checkpoint: str
    rows: list[dict[str, Any]]
    test_split: str
    calibration_split: str | None


def evaluate_checkpoint(
    checkpoint: str,
    stores: str | Sequence[str],
    tasks: Sequence[str] = (),
    split: str = "",
    calibration_split: str = "",
    head: str | None = None,
    batch_size: int = 16,
    use_ema: bool = True,
) -> Evaluation:
    """Evaluate ``checkpoint`` on the records of ``stores`` whose task is in ``tasks`` (default:
    the model's tasks), predicted with ``head`` or each record's own task.

    ``split`` selects the test records by the store's ``splits`` section (default: all records
    not in ``calibration_split``); ``calibration_split`` names the disjoint split on which the
    per-element offsets are fitted (none: raw errors only).
    """
    from omni_data.harmonize.splits import split_of

    from ..data.dataset import open_store, store_columns
    from ..train.checkpoint import load_model

    if calibration_split and calibration_split == split:
        raise ValueError(f"calibration split {calibration_split!r} is the test split: they must be disjoint")
    model, _, ckpt = load_model(checkpoint, use_ema=use_ema)
    if head is not None:
        model.task_index(head)
    store = open_store(stores)
    cols = store_columns(store)
    wanted = list(tasks) or (sorted({str(t) for t in cols["task"]}) if head else list(model.tasks))
    if head is None:
        for t in wanted:
            model.task_index(t)
    idx = np.flatnonzero(np.isin(cols["task"], wanted))
    labels = split_of(store) if (split or calibration_split) else None
    test_idx = idx if labels is None else idx[labels[idx] == split] if split else idx[labels[idx] != calibration_split]
    test_name = split or (f"all but {calibration_split!r}" if calibration_split else "all")
    if len(test_idx) == 0:
        raise ValueError(f"{stores}: no records of tasks {wanted} in split {test_name!r}")
    refs = dict(ckpt.get("references") or {})
    test = structure_errors(model, store, test_idx, head, batch_size, refs, str(checkpoint))
    calib = None
    if calibration_split:
        calib_idx = idx[labels[idx] == calibration_split]
        calib = structure_errors(model, store, calib_idx, head, batch_size, None) if len(calib_idx) else None
    return Evaluation(
        str(checkpoint),
        transfer_rows(test, calib, model.elements, test_name, calibration_split or ""),
        test_name,
        calibration_split or None,
    )


def format_evaluation(ev: Evaluation) -> str:
    """Fixed-width table in meV/atom and meV/Å, with the splits and sizes it compares."""

    def f(v: float | None) -> str:
        return "-" if v is None or not np.isfinite(v) else f"{1000 * v:.1f}"

    head = (
        f"{'head':<12}{'data':<14}{'n test':>7}{'n cal':>7}{'E MAE':>10}{'E RMSE':>10}"
        f"{'E-off MAE':>11}{'E-off RMSE':>12}{'F MAE':>9}{'F RMSE':>9}"
    )
    lines = [head]
    for r in ev.rows:
        lines.append(
            f"{r['head']:<12}{r['data']:<14}{r['n']:>7}{r['n_calibration']:>7}{f(r['energy_mae']):>10}"
            f"{f(r['energy_rmse']):>10}{f(r['energy_mae_offset']):>11}{f(r['energy_rmse_offset']):>12}"
            f"{f(r['forces_mae']):>9}{f(r['forces_rmse']):>9}"
        )
    cal = (
        (
            f"per-element offsets fitted per row on split {ev.calibration_split!r} (n cal), disjoint from the "
            f"test split {ev.test_split!r} (n test)"
        )
        if ev.calibration_split
        else "no calibration split: E-off not computed (pass --calibration-split)"
    )
    lines += ["E: meV/atom (raw, and after per-element offsets = E-off); F: meV/Å per component.", cal]
    return "\n".join(lines)


SEED_NUMBERS = ("energy_mae", "energy_mae_offset", "forces_mae")
"""The numbers ``seed_summary`` averages over the checkpoints of one setup."""


def seed_summary(evs: Sequence[Evaluation]) -> list[dict[str, Any]]:
    """Per (head, data) row of the evaluations of several training seeds of one setup: n seeds,
    and the mean and standard deviation (ddof 1; 0 for one seed) of each of ``SEED_NUMBERS``."""
    keyed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for ev in evs:
        for r in ev.rows:
            keyed.setdefault((r["head"], r["data"]), []).append(r)
    out = []
    for (head, data), rows in keyed.items():
        agg: dict[str, Any] = {"head": head, "data": data, "n": rows[0]["n"], "n_seeds": len(rows)}
        for name in SEED_NUMBERS:
            vals = [float(r[name]) for r in rows if r.get(name) is not None and np.isfinite(r[name])]
            agg[name] = float(np.mean(vals)) if vals else None
            agg[f"{name}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else (0.0 if vals else None)
        out.append(agg)
    return out


def format_seed_summary(rows: Sequence[dict[str, Any]]) -> str:
    """The ``seed_summary`` table: mean ± std in meV/atom and meV/Å."""

    def f(row: dict[str, Any], name: str) -> str:
        v, sd = row[name], row[f"{name}_std"]
        return "-" if v is None else f"{1000 * v:.1f} ± {1000 * sd:.1f}"

    head = f"{'head':<12}{'data':<14}{'n test':>7}{'seeds':>6}{'E MAE':>18}{'E-off MAE':>18}{'F MAE':>18}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['head']:<12}{r['data']:<14}{r['n']:>7}{r['n_seeds']:>6}{f(r, 'energy_mae'):>18}"
            f"{f(r, 'energy_mae_offset'):>18}{f(r, 'forces_mae'):>18}"
        )
    lines.append("mean ± std (ddof 1) over the checkpoints (training seeds); E: meV/atom, F: meV/Å per component.")
    return "\n".join(lines)
