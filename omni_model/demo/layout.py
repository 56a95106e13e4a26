"""Where every output of a demo run goes (one folder, printed at the end of the demo)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoLayout"]

RUNS: tuple[str, ...] = ("plain", "regularized", "bridged")
"""The three training runs: plain multi-task; + selective regularization (λ = 1e-4); + the bridging
set, with the λ the transfer sweep chose on validation rows (0; ``training.RUN_L2``)."""

COMMON_TASK = "crystals"
"""The task whose method (GFN1-xTB) the bridge recompute uses: bridge records are collected under
this task, so its head is the one that can learn every domain on one energy scale."""


@dataclass(frozen=True)
class DemoLayout:
    """Paths of one demo directory."""

    root: Path

    @property
    def sources(self) -> Path:
        return self.root / "sources"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    def store(self, name: str) -> Path:
        """``train``: the three databases; ``test``: held-out files; ``train_bridge``: train plus
        the collected bridging set; ``test_truth``: held-out structures recomputed with GFN1-xTB."""
        return self.root / "stores" / name

    def selection(self, name: str) -> Path:
        return self.root / "recompute" / name / "selection"

    def jobs(self, name: str) -> Path:
        return self.root / "recompute" / name / "jobs"

    def run(self, name: str) -> Path:
        return self.root / "runs" / name

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def stages_json(self) -> Path:
        return self.root / "stages.json"

    @property
    def ledger_json(self) -> Path:
        """Which stages finished on which inputs (``omni_model.demo.ledger``): what a re-run reuses."""
        return self.root / "ledger.json"

    @property
    def metrics_json(self) -> Path:
        return self.root / "metrics.json"

    @property
    def table_txt(self) -> Path:
        return self.root / "results.txt"

    @property
    def table_md(self) -> Path:
        return self.root / "results.md"

    @property
    def plot_png(self) -> Path:
        return self.root / "results.png"
