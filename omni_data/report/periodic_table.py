"""Periodic-table heat map: where each element sits (row, column) and a matplotlib drawing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["draw", "position"]

# (first Z, last Z) of each period's main block; La-Lu and Ac-Lr go to two rows below the table
_PERIOD_STARTS = [1, 3, 11, 19, 37, 55, 87]


def position(z: int) -> tuple[int, int]:
    """(row, column) of element ``z`` on an 18-column table; f-block rows are 8 and 9 (0-based)."""
    if not 1 <= z <= 118:
        raise ValueError(f"atomic number {z} out of 1..118")
    if z == 1:
        return 0, 0
    if z == 2:
        return 0, 17
    if 57 <= z <= 71:
        return 8, 2 + (z - 57)
    if 89 <= z <= 103:
        return 9, 2 + (z - 89)
    period = max(i for i, s in enumerate(_PERIOD_STARTS) if z >= s)
    offset = z - _PERIOD_STARTS[period]
    if period in (1, 2):  # 2 s-block then 6 p-block at columns 12..17
        return period, offset if offset < 2 else offset + 10
    if period in (5, 6) and offset >= 2:  # skip the f-block (14 elements) drawn below
        offset -= 14
    return period, offset


def _short(v: float) -> str:
    """A count in at most 4 characters: 950, 12k, 3.4M."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            q = v / div
            return f"{q:.1f}{suffix}" if q < 10 else f"{q:.0f}{suffix}"
    return f"{v:.0f}"


def draw(ax: Any, counts: Mapping[int, float], title: str, cmap: str = "viridis") -> Any:
    """Draw ``counts`` (Z -> frames containing Z) as a log-scaled heat map on ``ax``.

    Elements with no count are light grey with a grey symbol; returns the colour mappable.
    """
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt
    from ase.data import chemical_symbols

    values = {int(z): float(v) for z, v in counts.items() if v > 0}
    vmax = max(values.values(), default=1.0)
    norm = mcolors.LogNorm(vmin=1.0, vmax=max(vmax, 10.0))
    colours = plt.get_cmap(cmap)
    for z in range(1, 119):
        row, col = position(z)
        y = -row + (0.6 if row >= 8 else 0.0)  # f-block just below the table
        v = values.get(z)
        face = colours(norm(v)) if v else (0.93, 0.93, 0.93)
        ax.add_patch(plt.Rectangle((col, y), 0.94, 0.94, facecolor=face, edgecolor="white", lw=0.5))
        if v:
            r, g, b, _ = face
            text = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
        else:
            text = (0.6, 0.6, 0.6)
        if v:  # symbol above, count below
            ax.text(col + 0.47, y + 0.62, chemical_symbols[z], ha="center", va="center", fontsize=6.5, color=text)
            ax.text(col + 0.47, y + 0.26, _short(v), ha="center", va="center", fontsize=4.8, color=text)
        else:
            ax.text(col + 0.47, y + 0.47, chemical_symbols[z], ha="center", va="center", fontsize=6.5, color=text)
    ax.set_xlim(-0.2, 18.1)
    ax.set_ylim(-8.5, 1.05)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=colours)
    mappable.set_array(np.array([]))
    return mappable
