"""One demo run at ``--size ci`` shared by every test in tests/demo (it is the expensive part)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omni_model.demo.layout import DemoLayout


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, optional) -> tuple[DemoLayout, dict[str, Any]]:
    """(layout, stage results) of ``omni-data demo --size ci`` run through its CLI module."""
    optional("tblite", "dft")  # the demo labels and recomputes with GFN-xTB
    optional("torch", "model")  # and trains
    optional("e3nn", "model")
    import argparse

    from omni_data.cli import demo as demo_cli
    from omni_model.demo.run import run_demo

    out = tmp_path_factory.mktemp("omni-demo")
    parser = argparse.ArgumentParser()
    demo_cli.add_arguments(parser)
    args = parser.parse_args(["--out", str(out), "--size", "ci", "--workers", "1"])
    results = run_demo(args.out, size=args.size, workers=args.workers, seed=args.seed)
    return DemoLayout(Path(out).resolve()), results
