"""A small measured ablation on an existing demo folder: plain vs bridge vs bridge + selective
regularization (and any λ), several training seeds each, scored like the demo's cross-domain rows.

    python -m omni_model.demo.ablation DEMO_DIR [--seeds 3] [--steps 200] [--l2 1e-4 ...] [--only V ...]

It reuses the folder's stores (``train``, ``train_bridge``, ``test``, ``test_truth`` with its
calibration/test split) and trains only the variants, into ``DEMO_DIR/runs/ablation-<variant>[-seed<k>]``.
Writes ``ablation.json`` (rows per variant and seed, and their mean ± std) and ``ablation.md``.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_model.demo import report
from omni_model.demo.layout import DemoLayout


@dataclass(frozen=True)
class Variant:
    """One training setup: bridging set in the common task or not, and λ of ‖θ_T‖²."""

    name: str
    bridge: bool
    task_l2: float


def default_variants(l2s: list[float]) -> list[Variant]:
    """plain (no bridge, λ 0), bridge (λ 0), and bridge + regularization for each λ in ``l2s``."""
    return [Variant("plain", False, 0.0), Variant("bridge", True, 0.0),
            *(Variant(f"bridge+reg{l2:g}", True, l2) for l2 in l2s)]


def run_ablation(demo_dir: Path, variants: list[Variant], seeds: int, steps: int, size: str = "ci",
                 seed: int = 0, name: str = "ablation") -> dict[str, Any]:
    """Train and evaluate every (variant, seed); returns {variant: {"seeds": {...}, "rows": mean ± std}}."""
    from omni_model.demo.training import stage_evaluate, stage_train

    lay = DemoLayout(Path(demo_dir).resolve())
    out: dict[str, Any] = {}
    for v in variants:
        per_seed: dict[str, Any] = {}
        for k in range(seeds):
            t0 = time.time()
            res = stage_train(lay, f"ablation-{v.name}", size, seed, k, bridge=v.bridge, task_l2=v.task_l2,
                              steps=steps)
            rows = stage_evaluate(lay, v.name, res["checkpoint"], with_truth=True)["rows"]
            loss = res["loss"]
            per_seed[str(seed + k)] = {"rows": rows, "seconds": round(time.time() - t0, 1),
                                       "loss_first_last": [loss[0][1], loss[-1][1]] if loss else None}
            print(f"{v.name} seed {seed + k}: {time.time() - t0:.0f} s", flush=True)
        out[v.name] = {"bridge": v.bridge, "task_l2": v.task_l2, "steps": steps, "seeds": per_seed,
                       "rows": report.aggregate_seeds([s["rows"] for s in per_seed.values()])}
    (lay.root / f"{name}.json").write_text(json.dumps(out, indent=2))
    (lay.root / f"{name}.md").write_text(format_ablation(out))
    return out


def format_ablation(result: dict[str, Any]) -> str:
    """Markdown: per variant and evaluation row, mean ± std over seeds (meV/atom, meV/Å)."""
    lines = ["| variant | evaluation | n test | n cal | seeds | E raw | E offset-aligned | F |", "|---|---|---|---|---|---|---|---|"]
    for name, v in result.items():
        for row in v["rows"]:
            where = f"{row['data'].split()[0]} under {row['head']} head" + (" (GFN1-xTB)" if row["kind"] == "cross-domain" else "")
            lines.append(f"| {name} | {where} | {row['n']} | {row.get('n_calibration') or '-'} | {row['n_seeds']} | "
                         f"{report._cell(row, 'energy_mae')} | {report._cell(row, 'energy_mae_offset')} | "
                         f"{report._cell(row, 'forces_mae')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m omni_model.demo.ablation", description=__doc__.splitlines()[0])
    p.add_argument("demo_dir", type=Path)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--l2", type=float, nargs="*", default=[1e-4], help="λ values of bridge + regularization")
    p.add_argument("--size", default="ci", help="the demo size the folder was made with (default ci)")
    p.add_argument("--only", nargs="*", default=[], help="run only these variants (e.g. plain bridge+reg0.0001)")
    p.add_argument("--name", default="ablation", help="output stem: DEMO_DIR/NAME.json and NAME.md")
    args = p.parse_args(argv)
    variants = [v for v in default_variants(args.l2) if not args.only or v.name in args.only]
    if not variants:
        p.error(f"--only {args.only}: no such variant; known: {[v.name for v in default_variants(args.l2)]}")
    result = run_ablation(args.demo_dir, variants, args.seeds, args.steps, args.size, name=args.name)
    print(format_ablation(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
