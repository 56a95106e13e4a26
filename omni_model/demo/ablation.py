"""A small measured ablation on an existing demo folder: plain vs bridge vs bridge + selective
regularization (and any λ), several training seeds each, scored like the demo's cross-domain rows.

    python -m omni_model.demo.ablation DEMO_DIR [--seeds 3] [--steps 200] [--l2 1e-4 ...] [--only V ...]
    python -m omni_model.demo.ablation DEMO_DIR --sweep [--sweep-l2 0 1e-5 1e-3 1e-1]
        [--sweep-fraction 0.03 0.3] [--sweep-weight 4] [--jobs 2]

``--sweep`` varies one factor at a time around the demo's default (bridge + λ = TASK_L2, the
folder's bridge fraction, sampling weight 1): λ, the bridge fraction (each fraction's bridge is
selected, recomputed and collected once into ``DEMO_DIR/sweep/bridge-<f>/``, with its own stage
ledger, so a re-run reuses it) and the sampling weight of the common task that holds the bridge.
Every run is scored on validation rows (``sweep_scores.validation_rows``: the calibration split of the
held-out truth, never the test split; and the trainer's own validation split) and on the test
rows; the recommended setting is chosen on validation only (``choose_by_validation``).

It reuses the folder's stores (``train``, ``train_bridge``, ``test``, ``test_truth`` with its
calibration/test split) and trains only the variants, into ``DEMO_DIR/runs/ablation-<variant>[-seed<k>]``.
Writes ``ablation.json`` (rows per variant and seed, and their mean ± std) and ``ablation.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from omni_model.demo import report
from omni_model.demo.layout import DemoLayout
from omni_model.demo.sweep import (
    Variant,
    format_sweep,
    parse_sweep_values,
    plot_sweep,
    run_sweep,
    sweep_variants,
)

__all__ = ["default_variants", "run_ablation", "format_ablation", "main"]


def default_variants(l2s: list[float]) -> list[Variant]:
    """plain (no bridge, λ 0), bridge (λ 0), and bridge + regularization for each λ in ``l2s``."""
    return [
        Variant("plain", False, 0.0),
        Variant("bridge", True, 0.0),
        *(Variant(f"bridge+reg{l2:g}", True, l2) for l2 in l2s),
    ]


def run_ablation(
    demo_dir: Path,
    variants: list[Variant],
    seeds: int,
    steps: int,
    size: str = "ci",
    seed: int = 0,
    name: str = "ablation",
) -> dict[str, Any]:
    """Train and evaluate every (variant, seed); returns {variant: {"seeds": {...}, "rows": mean ± std}}."""
    from omni_model.demo.training import stage_evaluate, stage_train

    lay = DemoLayout(Path(demo_dir).resolve())
    out: dict[str, Any] = {}
    for v in variants:
        per_seed: dict[str, Any] = {}
        for k in range(seeds):
            t0 = time.time()
            res = stage_train(lay, f"ablation-{v.name}", size, seed, k, bridge=v.bridge, task_l2=v.task_l2, steps=steps)
            rows = stage_evaluate(lay, v.name, res["checkpoint"], with_truth=True)["rows"]
            loss = res["loss"]
            per_seed[str(seed + k)] = {
                "rows": rows,
                "seconds": round(time.time() - t0, 1),
                "loss_first_last": [loss[0][1], loss[-1][1]] if loss else None,
            }
            print(f"{v.name} seed {seed + k}: {time.time() - t0:.0f} s", flush=True)
        out[v.name] = {
            "bridge": v.bridge,
            "task_l2": v.task_l2,
            "steps": steps,
            "seeds": per_seed,
            "rows": report.aggregate_seeds([s["rows"] for s in per_seed.values()]),
        }
    (lay.root / f"{name}.json").write_text(json.dumps(out, indent=2))
    (lay.root / f"{name}.md").write_text(format_ablation(out))
    return out


def format_ablation(result: dict[str, Any]) -> str:
    """Markdown: per variant and evaluation row, mean ± std over seeds (meV/atom, meV/Å)."""
    lines = [
        "| variant | evaluation | n test | n cal | seeds | E raw | E offset-aligned | F |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in result.items():
        for row in v["rows"]:
            where = f"{row['data'].split()[0]} under {row['head']} head" + (
                " (GFN1-xTB)" if row["kind"] == "cross-domain" else ""
            )
            lines.append(
                f"| {name} | {where} | {row['n']} | {row.get('n_calibration') or '-'} | {row['n_seeds']} | "
                f"{report._cell(row, 'energy_mae')} | {report._cell(row, 'energy_mae_offset')} | "
                f"{report._cell(row, 'forces_mae')} |"
            )
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
    p.add_argument("--sweep", action="store_true", help="one factor at a time around the default (see above)")
    p.add_argument("--sweep-l2", nargs="*", default=["0", "1e-5", "1e-3", "1e-1"], help="λ values to sweep")
    p.add_argument("--sweep-fraction", nargs="*", default=["0.03", "0.3"], help="bridge fractions (0.03 or 3%%)")
    p.add_argument("--sweep-weight", nargs="*", default=["4"], help="sampling weights of the bridge's task")
    p.add_argument("--sweep-base-l2", default=None, help="λ of the point the sweep varies around (default TASK_L2)")
    p.add_argument("--jobs", type=int, default=1, help="trainings at a time in the sweep")
    p.add_argument(
        "--plot",
        nargs="+",
        type=Path,
        metavar="SWEEP.json",
        help="only draw DEMO_DIR/sweep.png from these sweep results (later files add their variants)",
    )
    args = p.parse_args(argv)
    if args.plot:
        merged: dict[str, Any] = {"variants": {}, "choice": None}
        for f in args.plot:
            res = json.loads(Path(f).read_text(encoding="utf-8"))
            merged["variants"].update(res["variants"])
            merged["choice"] = merged["choice"] or res.get("choice")
        out = plot_sweep(merged, Path(args.demo_dir) / f"{args.name if args.name != 'ablation' else 'sweep'}.png")
        print(f"wrote {out}")
        return 0
    if args.sweep:
        from omni_model.demo.data_stages import BRIDGE_FRACTION
        from omni_model.demo.training import TASK_L2

        try:
            sweep = sweep_variants(
                parse_sweep_values(args.sweep_l2, "l2"),
                parse_sweep_values(args.sweep_fraction, "fraction", positive=True),
                parse_sweep_values(args.sweep_weight, "weight", positive=True),
                parse_sweep_values([args.sweep_base_l2], "base-l2")[0] if args.sweep_base_l2 is not None else TASK_L2,
                BRIDGE_FRACTION[args.size],
            )
        except ValueError as exc:
            p.error(str(exc))
        sweep = [v for v in sweep if not args.only or v.name in args.only]
        result = run_sweep(
            args.demo_dir,
            sweep,
            args.seeds,
            args.steps,
            args.size,
            jobs=args.jobs,
            name=args.name if args.name != "ablation" else "sweep",
        )
        print(format_sweep(result))
        return 0
    variants = [v for v in default_variants(args.l2) if not args.only or v.name in args.only]
    if not variants:
        p.error(f"--only {args.only}: no such variant; known: {[v.name for v in default_variants(args.l2)]}")
    result = run_ablation(args.demo_dir, variants, args.seeds, args.steps, args.size, name=args.name)
    print(format_ablation(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
