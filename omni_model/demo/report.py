"""The demo's result table (text + Markdown) and figure (PNG) for its three training runs.

Input is the ``metrics`` mapping that ``omni_model.demo.run`` writes to ``metrics.json``::

    {run: {"rows": [{"kind": "same-domain"|"cross-domain", "head": task, "data": name, "n": int,
                     "energy_mae": eV/atom, "forces_mae": eV/Å, "stress_mae": eV/Å³|None,
                     cross-domain also "n_calibration", "energy_mae_offset", "energy_rmse(_offset)",
                     "forces_rmse"; with several seeds each number's "<name>_std"}, ...],
           "loss": [[step, loss], ...],            # first seed
           "seeds": {seed: rows}, "losses": [loss per seed]}}

Energies are compared per atom (mean absolute error of E/N), forces per component, stress per
Voigt component. Errors print in meV/atom, meV/Å and meV/Å³; with several training seeds as
mean ± standard deviation (ddof 1) over the seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["aggregate_seeds", "table_rows", "format_table", "plot", "explain"]

RUN_TITLES: dict[str, str] = {
    "plain": "1. plain multi-task",
    "regularized": "2. + selective regularization",
    "bridged": "3. + bridging set (λ chosen on validation: 0)",
}

MEANINGS: dict[str, str] = {
    "same-domain": "held-out test structures of a database, predicted with that database's own task head",
    "cross-domain": "held-out test structures of one domain, predicted with another task's head "
    "(the crystals head, GFN1-xTB) and compared with GFN1-xTB labels recomputed by the bridge step",
}


NUMBERS: tuple[str, ...] = (
    "energy_mae",
    "energy_rmse",
    "energy_mae_offset",
    "energy_rmse_offset",
    "energy_mae_shifted",
    "forces_mae",
    "forces_rmse",
    "stress_mae",
)
"""The per-row numbers that are averaged over seeds."""


def aggregate_seeds(rows_per_seed: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per evaluation: the mean over seeds of every number in ``NUMBERS`` and its
    standard deviation (``<name>_std``, ddof 1; 0 for one seed); ``n_seeds`` says how many."""
    import numpy as np

    order: list[tuple[str, str, str]] = []
    by_key: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for rows in rows_per_seed:
        for row in rows:
            key = _row_key(row)
            if key not in by_key:
                order.append(key)
                by_key[key] = []
            by_key[key].append(row)
    out = []
    for key in order:
        rows = by_key[key]
        agg = dict(rows[0])
        agg["n_seeds"] = len(rows)
        for name in NUMBERS:
            values = [float(r[name]) for r in rows if r.get(name) is not None]
            if values:
                agg[name] = float(np.mean(values))
                agg[f"{name}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out.append(agg)
    return out


def _row_key(row: Mapping[str, Any]) -> tuple[str, str, str]:
    return (row["kind"], row["head"], row["data"])


def _fmt(value: float | None, scale: float = 1000.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    v = value * scale
    return f"{v:.1f}" if abs(v) < 1e4 else f"{v:.3g}"


def _cell(row: Mapping[str, Any], name: str) -> str:
    """``mean`` or, over several seeds, ``mean ± std`` in milli-units."""
    text = _fmt(row.get(name))
    std = row.get(f"{name}_std")
    if text != "-" and std is not None and row.get("n_seeds", 1) > 1:
        text += f" ± {_fmt(std)}"
    if text != "-" and name == "energy_mae_offset" and row.get("uncalibrated"):
        text += " *"  # some test elements never occur in the calibration part: their offset is 0
    return text


def table_rows(metrics: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, str, str]], dict]:
    """(runs in order, evaluation rows in order, {(row, run): row dict})."""
    runs = [r for r in RUN_TITLES if r in metrics] + [r for r in metrics if r not in RUN_TITLES]
    order: list[tuple[str, str, str]] = []
    cells: dict[tuple[tuple[str, str, str], str], Mapping[str, Any]] = {}
    for run in runs:
        for row in metrics[run].get("rows", []):
            key = _row_key(row)
            if key not in order:
                order.append(key)
            cells[(key, run)] = row
    order.sort(key=lambda k: (k[0] != "same-domain", k[1], k[2]))
    return runs, order, cells


def format_table(metrics: Mapping[str, Any], markdown: bool = False) -> str:
    """The result table: one line per evaluation and run (errors in meV), then the loss per run."""
    runs, order, cells = table_rows(metrics)
    head = [
        "kind",
        "head",
        "data",
        "n test",
        "n cal",
        "run",
        "seeds",
        "E raw meV/atom",
        "E offset-aligned meV/atom",
        "F meV/Å",
        "S meV/Å³",
    ]
    lines = []
    for key in order:
        for run in runs:
            row = cells.get((key, run))
            if row is None:
                continue
            lines.append(
                [
                    key[0],
                    key[1],
                    key[2],
                    str(row["n"]),
                    str(row.get("n_calibration") or "-"),
                    RUN_TITLES.get(run, run),
                    str(row.get("n_seeds", 1)),
                    _cell(row, "energy_mae"),
                    _cell(row, "energy_mae_offset"),
                    _cell(row, "forces_mae"),
                    _cell(row, "stress_mae"),
                ]
            )
    for run in runs:
        loss = metrics[run].get("loss") or []
        text = f"{loss[0][1]:.4g} -> {loss[-1][1]:.4g}" if loss else "-"
        lines.append(
            ["training loss", "", "first -> last (seed 1)", "", "", RUN_TITLES.get(run, run), "", text, "", "", ""]
        )
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 6 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(
        [fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*line) for line in lines]
    )


def plot(metrics: Mapping[str, Any], path: Path) -> Path:
    """Grouped bars of energy and force MAE per evaluation row and run, plus the loss curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs, order, cells = table_rows(metrics)
    fig, axes = plt.subplots(1, 4, figsize=(22, 5.4), gridspec_kw={"width_ratios": [1.3, 1.3, 1.3, 1.0]})
    labels = [f"{k[2].split()[0]}\n{k[1]} head" for k in order]  # the dashed line splits same/cross
    x = np.arange(len(order))
    width = 0.8 / max(1, len(runs))
    colours = ["#7f7f7f", "#1f77b4", "#d62728", "#2ca02c"]
    for ax, field, title, unit in (
        (axes[0], "energy_mae", "energy MAE, raw", "meV/atom"),
        (axes[1], "energy_mae_offset", "energy MAE after per-element offsets (cross-domain)", "meV/atom"),
        (axes[2], "forces_mae", "force MAE", "meV/Å"),
    ):
        for j, run in enumerate(runs):
            values = [cells.get((k, run), {}).get(field) for k in order]
            heights = [np.nan if v is None else v * 1000.0 for v in values]
            stds = [cells.get((k, run), {}).get(f"{field}_std") for k in order]
            errs = [0.0 if v is None else v * 1000.0 for v in stds]
            ax.bar(
                x + (j - (len(runs) - 1) / 2) * width,
                heights,
                width,
                label=RUN_TITLES.get(run, run),
                color=colours[j % len(colours)],
                yerr=errs if any(errs) else None,
                capsize=2,
            )
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(unit)
        ax.set_title(f"{title} (held-out; lower is better)", fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
        n_same = sum(1 for k in order if k[0] == "same-domain")
        if 0 < n_same < len(order):
            ax.axvline(n_same - 0.5, color="k", lw=0.8, ls="--")
    axes[0].legend(fontsize=8, loc="upper left")
    ax = axes[3]
    for j, run in enumerate(runs):
        loss = metrics[run].get("loss") or []
        if loss:
            steps, values = (np.asarray(v, dtype=float) for v in zip(*loss))
            colour = colours[j % len(colours)]
            ax.plot(steps, values, color=colour, alpha=0.25, lw=0.8)
            k = max(1, len(values) // 20)  # running mean over ~5% of the run
            smooth = np.convolve(values, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1 :], smooth, color=colour, label=RUN_TITLES.get(run, run))
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("training loss (faint: per step; bold: running mean)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.suptitle(
        "Omni demo on held-out structures. Left of the dashed line: each database under its own head; "
        "right: metals and molecules under the crystals head vs GFN1-xTB recomputed labels",
        fontsize=11,
    )
    fig.tight_layout()
    from omni_data.report.plots import save_figure

    return save_figure(fig, path, dpi=110)


def explain(rows_kinds: Sequence[str] = ("same-domain", "cross-domain")) -> str:
    """What the table's numbers mean (printed under it)."""
    lines = [
        "E raw: mean |E_pred - E_ref| / N_atoms on the test part (n test).",
        "E offset-aligned (cross-domain rows): the same after subtracting per-element offsets fitted by least",
        "squares on a disjoint calibration part of the held-out truth (n cal): what remains once the two",
        "methods' energy zeros are aligned, i.e. what the head did not transfer. A * marks a row whose",
        "test part has elements the calibration part lacks (no offset for them: not a transfer error).",
        "F: mean |F_pred - F_ref| over force components; S: mean |S_pred - S_ref| over Voigt components",
        "(periodic structures only). All in milli-units; with seeds > 1, mean ± std over the training seeds.",
    ]
    lines += [f"{kind}: {MEANINGS[kind]}" for kind in rows_kinds if kind in MEANINGS]
    return "\n".join(lines)
