"""The report's figures, each written as a PNG with matplotlib's Agg backend (no display needed).

Every function takes the collected statistics and a path, draws one figure, writes it atomically
and returns the path. Empty inputs give a figure that says so rather than no file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.report.collect import TaskStats

__all__ = [
    "DPI",
    "save_figure",
    "atoms_per_structure",
    "coverage",
    "energy_per_atom",
    "force_magnitude",
    "quarantine_reasons",
]

DPI = 110


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=DPI)


def save_figure(fig: Any, path: Path, **savefig: Any) -> Path:
    """Write ``fig`` to ``path`` atomically (a temporary file beside it, then rename) and close it;
    ``savefig`` goes to matplotlib's ``Figure.savefig`` (``dpi``, ``bbox_inches``)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, **savefig)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _save(fig: Any, path: Path) -> Path:
    return save_figure(fig, path, bbox_inches="tight")


def _nothing(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def coverage(task: str, st: TaskStats, path: Path) -> Path:
    """Periodic-table heat map: number of frames of ``task`` containing each element."""
    from omni_data.report import periodic_table

    fig, ax = _figure(7.5, 4.6)
    counts = {z: int(n) for z, n in enumerate(st.element_frames) if n}
    mappable = periodic_table.draw(
        ax, counts, f"{task}: frames containing each element ({st.frames} frames, {len(counts)} elements)"
    )
    bar = fig.colorbar(mappable, ax=ax, orientation="horizontal", fraction=0.05, pad=0.02, aspect=40)
    bar.set_label("frames (log scale)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return _save(fig, path)


def _hist_per_task(
    tasks: Mapping[str, TaskStats],
    field_name: str,
    xlabel: str,
    title: str,
    path: Path,
    log_y: bool = True,
    bins: int = 50,
    unit: str = "frames",
) -> Path:
    """One panel per task with its own x range: tasks differ by orders of magnitude (e.g.
    all-electron vs pseudopotential energies), so a shared axis would hide every shape."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    data = {t: st.array(field_name) for t, st in tasks.items()}
    data = {t: v[np.isfinite(v)] for t, v in data.items() if len(v)}
    if not data:
        fig, ax = _figure(7.0, 2.5)
        _nothing(ax, xlabel)
        ax.set_title(title, fontsize=10)
        return _save(fig, path)
    ncols = min(3, len(data))
    nrows = -(-len(data) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.7 * nrows), dpi=DPI, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (task, values) in enumerate(data.items()):
        ax = axes[k // ncols][k % ncols]
        counts, _e, _p = ax.hist(values, bins=bins, color=colours[k % len(colours)], alpha=0.85)
        if log_y and counts.max() > 30:  # log only where it helps; plain integer tick labels
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{task} ({len(values)} {unit})", fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.get_major_formatter().set_useOffset(False)
        ax.locator_params(axis="x", nbins=5)
    for k in range(len(data), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    axes[0][0].set_ylabel("count", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def energy_per_atom(tasks: Mapping[str, TaskStats], path: Path, referenced: bool = False) -> Path:
    """Histogram of energy per atom per task (raw, or after subtracting the references)."""
    if referenced:
        return _hist_per_task(
            tasks, "epa_ref", "(E − Σ n·μ) / N  (eV/atom)", "energy per atom after elemental references", path
        )
    return _hist_per_task(tasks, "epa", "E / N  (eV/atom)", "energy per atom", path)


def force_magnitude(tasks: Mapping[str, TaskStats], path: Path) -> Path:
    """Histogram of per-atom |F| per task (a capped random sample per shard)."""
    return _hist_per_task(tasks, "fmag", "|F| per atom (eV/Å)", "force magnitudes (sampled)", path, unit="atoms")


def atoms_per_structure(tasks: Mapping[str, TaskStats], path: Path) -> Path:
    """Histogram of atoms per frame per task (log-spaced bins: 1 to thousands of atoms)."""
    fig, ax = _figure(7.0, 3.8)
    data = {t: st.array("n_atoms") for t, st in tasks.items() if st.frames}
    if not data:
        _nothing(ax, "frames")
    else:
        hi = max(int(v.max()) for v in data.values())
        edges = np.unique(np.round(np.logspace(0, np.log10(hi + 1), 40)))
        for task, values in data.items():
            ax.hist(values, bins=edges, histtype="step", lw=1.4, label=f"{task} (n={len(values)})")
        ax.set_xscale("log")
        ax.set_xlabel("atoms per structure")
        ax.set_ylabel("frames")
        ax.legend(fontsize=8, frameon=False)
    ax.set_title("structure sizes", fontsize=10)
    return _save(fig, path)


def quarantine_reasons(reasons: Mapping[str, int], path: Path, top: int = 15) -> Path:
    """Horizontal bar chart of quarantine reasons (most common first)."""
    items = sorted(reasons.items(), key=lambda kv: -kv[1])[:top]
    fig, ax = _figure(7.0, 0.8 + 0.3 * max(len(items), 2))
    if not items:
        _nothing(ax, "quarantined records")
    else:
        labels = [k for k, _ in items][::-1]
        counts = [v for _, v in items][::-1]
        ax.barh(labels, counts, color="tab:red")
        for y, v in enumerate(counts):
            ax.text(v, y, f" {v}", va="center", fontsize=8)
        ax.set_xlabel("records")
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlim(0, max(counts) * 1.15)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("quarantine reasons", fontsize=10)
    return _save(fig, path)
