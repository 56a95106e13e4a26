"""What select-bridge writes and prints: ``selection.parquet`` (atomic), text files written
atomically, and the summary for a person."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.select.descriptor_set import DescriptorSet
from omni_data.select.strategies import Picks
from omni_data.store.catalog import atomic_write_bytes

__all__ = ["write_selection", "write_text_atomic", "summary_text"]


def write_selection(out_dir: Path, ds: DescriptorSet, picks: Picks, reason: np.ndarray) -> Path:
    """selection.parquet with one row per pick, in pick order; atomic."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = picks.rows
    table = pa.table(
        {
            "id": pa.array(ds.ids[rows].tolist(), pa.string()),
            "task": pa.array(ds.tasks[rows].tolist(), pa.string()),
            "dataset": pa.array(ds.datasets[rows].tolist(), pa.string()),
            "store": pa.array(ds.store_of[rows].tolist(), pa.string()),
            "rank": pa.array(np.arange(len(rows)), pa.int64()),
            "distance": pa.array(picks.distance, pa.float64()),
            "reason": pa.array([str(r) for r in reason], pa.string()),
            "score": pa.array(picks.score if picks.score is not None else [None] * len(rows), pa.float64()),
        }
    )
    path = out_dir / "selection.parquet"
    tmp = out_dir / f".selection.{os.getpid()}.tmp.parquet"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` to ``path`` through the store's atomic writer (temp file, fsync, rename)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def summary_text(summary: dict[str, Any]) -> str:
    """The run for a person: counts, picks and covering radius per task, files written."""
    seeds = f", continuing {summary['seeds']:,} earlier picks" if summary.get("seeds") else ""
    lines = [
        f"select-bridge: picked {summary['picked']:,} of {summary['candidates']:,} candidates "
        f"(strategy {summary['strategy']}, {summary['mode']}{seeds}) in {summary['seconds']:.1f} s",
        f"covering radius {summary['covering_radius']:.6g} "
        "(no candidate is farther than this from a pick, in descriptor units)",
    ]
    radius = summary["covering_radius_per_task"]
    width = max([len("task")] + [len(t) for t in radius])
    lines.append(f"  {'task':<{width}}  {'picks':>7}  covering radius")
    for task, picks in summary["per_task"].items():
        lines.append(f"  {task:<{width}}  {picks:>7,}  {radius[task]:.6g}")
    lines.append("wrote " + ", ".join([summary["selection"], *summary["coverage"]]))
    return "\n".join(lines)
