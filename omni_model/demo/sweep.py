"""The transfer sweep (issue 18 item 3): one factor at a time around the demo's default (λ, the
bridge fraction, the sampling weight of the task that holds the bridge), several seeds each,
scored on validation rows (``sweep_scores``), chosen there, tabulated and plotted.

Run it with ``python -m omni_model.demo.ablation DEMO_DIR --sweep`` (see that module).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_model.demo import report
from omni_model.demo.layout import COMMON_TASK, DemoLayout
from omni_model.demo.sweep_scores import (
    choose_by_validation,
    in_domain_split_rows,
    valid_csv_rows,
    validation_rows,
)

__all__ = [
    "Variant",
    "sweep_variants",
    "parse_sweep_values",
    "fraction_layout",
    "build_fraction_bridge",
    "task_weights",
    "run_sweep",
    "summarize_sweep",
    "format_sweep",
    "sweep_points",
    "plot_sweep",
]


@dataclass(frozen=True)
class Variant:
    """One training setup: bridging set in the common task or not, λ of ‖θ_T‖², the bridge
    fraction (None: the folder's own bridge) and the sampling weight of the common task (1:
    proportional to its size, bridge included; w: w times that)."""

    name: str
    bridge: bool
    task_l2: float
    fraction: float | None = None
    weight: float = 1.0


def sweep_variants(
    l2s: Sequence[float],
    fractions: Sequence[float],
    weights: Sequence[float],
    default_l2: float,
    default_fraction: float,
) -> list[Variant]:
    """plain, the default (bridge, λ ``default_l2``, the folder's fraction, weight 1), and one
    factor at a time around it: every λ in ``l2s``, fraction in ``fractions``, weight in ``weights``."""
    base = Variant(f"bridge+reg{default_l2:g}" if default_l2 else "bridge", True, float(default_l2))
    out = [Variant("plain", False, 0.0), base]
    for l2 in l2s:
        out.append(Variant(f"bridge+reg{float(l2):g}" if l2 else "bridge", True, float(l2)))
    for f in fractions:
        if not math.isclose(f, default_fraction):
            out.append(Variant(f"{base.name}+frac{f:g}", True, base.task_l2, fraction=float(f)))
    for w in weights:
        if not math.isclose(w, 1.0):
            out.append(Variant(f"{base.name}+w{w:g}", True, base.task_l2, weight=float(w)))
    unique: dict[str, Variant] = {}
    for v in out:
        unique.setdefault(v.name, v)  # the default's λ listed again is the default itself
    return list(unique.values())


def parse_sweep_values(text: Sequence[str], what: str, positive: bool = False) -> list[float]:
    """Numbers from the command line ("1e-3", "3%"); a clear error names the bad value."""
    out = []
    for t in text:
        try:
            v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
        except ValueError:
            raise ValueError(f"--sweep-{what}: {t!r} is not a number") from None
        if v < 0 or (positive and v <= 0) or not math.isfinite(v):
            raise ValueError(f"--sweep-{what}: {t!r} must be {'> 0' if positive else '>= 0'}")
        if what == "fraction" and v > 1:
            raise ValueError(f"--sweep-fraction: {t!r} is more than 100%")
        out.append(v)
    return out


def fraction_layout(lay: DemoLayout, fraction: float) -> DemoLayout:
    """Where the bridge of ``fraction`` is built: ``sweep/bridge-<f>/`` (selection, jobs, store)."""
    return DemoLayout(lay.root / "sweep" / f"bridge-{fraction:g}")


def build_fraction_bridge(lay: DemoLayout, fraction: float, seed: int = 0) -> Path:
    """``stores/train_bridge`` of a bridge picked with ``fraction`` (the demo's select, recompute
    and references stages for the bridge only; the held-out truth is the folder's). Each step is
    a ledger stage in the fraction's folder, so a second call reuses what finished."""
    from omni_model.demo import generate as gen
    from omni_model.demo.data_stages import ingest_database, recompute_selection, stage_references
    from omni_model.demo.stages import StageFailed, StageRunner, cluster_config

    flay = fraction_layout(lay, fraction)
    flay.root.mkdir(parents=True, exist_ok=True)
    dbs = {k: gen.Database(**v) for k, v in json.loads((lay.root / "generation.json").read_text())["databases"].items()}
    runner = StageRunner(flay.logs, flay.stages_json, ledger=flay.ledger_json)

    def select() -> dict[str, Any]:
        from omni_data.select.selection import SelectConfig, select_bridge, summary_text

        cfg = SelectConfig(
            stores=[str(lay.store("train"))],
            out=str(flay.selection("bridge")),
            fraction=fraction,
            min_per_task=2,
            seed=seed,
        )  # the folder's describe sidecars are reused
        print(summary_text(select_bridge(cfg)), flush=True)
        return {}

    def recompute() -> dict[str, Any]:
        from omni_data.pipeline.cluster import dask_client

        with dask_client(cluster_config(1)) as client:
            if not (flay.store("train_bridge") / "catalog.json").exists():
                for db in dbs.values():
                    ingest_database(db, "train", flay.store("train_bridge"), client)
            return recompute_selection(flay, "bridge", flay.store("train_bridge"), client)

    runner.run(
        "select",
        select,
        options={"fraction": fraction, "seed": seed, "store": str(lay.store("train"))},
        owns=[flay.selection("bridge")],
    )
    runner.run(
        "recompute", recompute, needs=["select"], owns=[flay.store("train_bridge"), flay.jobs("bridge")], resumable=True
    )
    res = runner.run("references_bridge", lambda: stage_references(flay, "train_bridge", 1), needs=["recompute"])
    if res.status != "ok":
        raise StageFailed(f"bridge of fraction {fraction:g}: {res.status} {res.detail} (logs: {flay.logs})")
    return flay.store("train_bridge")


def task_weights(store: Path, weight: float) -> dict[str, float] | None:
    """Sampling weights: each task's size, the common task's (bridge included) times ``weight``."""
    if math.isclose(weight, 1.0):
        return None
    from omni_model.demo.data_stages import store_counts

    counts = store_counts(store)["by_task"]
    return {t: float(n) * (weight if t == COMMON_TASK else 1.0) for t, n in counts.items()}


def _sweep_one(
    root: str, v: Variant, store: str | None, weights: dict[str, float] | None, k: int, seed: int, steps: int, size: str
) -> dict[str, Any]:
    """Train and score one (variant, seed) in its own process; reuses a finished run's result."""
    from omni_model.demo.training import run_dir, stage_evaluate, stage_train

    lay = DemoLayout(Path(root))
    run = f"ablation-{v.name}"
    folder = run_dir(lay, run, k)
    key = {"variant": v.__dict__, "store": store, "weights": weights, "seed": seed + k, "steps": steps}
    done = folder / "sweep-result.json"
    if done.is_file():
        old = json.loads(done.read_text())
        if old.get("key") == key:
            if "in_domain" not in old:  # a result from before the in-domain split rows: add them
                old["in_domain"] = in_domain_split_rows(str(folder / "final.pt"), lay)
                old["validation"] = [r for r in old["validation"] if r["kind"] != "validation in-domain"]
                old["validation"] += old["in_domain"]["val"]
                done.write_text(json.dumps(old, indent=2))
            return old
    t0 = time.time()
    res = stage_train(
        lay,
        run,
        size,
        seed,
        k,
        bridge=v.bridge,
        task_l2=v.task_l2,
        steps=steps,
        store=Path(store) if store else None,
        task_weights=weights,
    )
    train_s = time.time() - t0
    rows = stage_evaluate(lay, v.name, res["checkpoint"], with_truth=True)["rows"]
    in_domain = in_domain_split_rows(res["checkpoint"], lay)
    val = validation_rows(res["checkpoint"], lay.store("test_truth")) + in_domain["val"]
    loss = res["loss"]
    out = {
        "key": key,
        "rows": rows,
        "validation": val,
        "in_domain": in_domain,
        "trainer_valid": valid_csv_rows(folder / "valid.csv"),
        "train_seconds": round(train_s, 1),
        "seconds": round(time.time() - t0, 1),
        "loss_first_last": [loss[0][1], loss[-1][1]] if loss else None,
        "load_avg_1min": os.getloadavg()[0],
    }
    done.write_text(json.dumps(out, indent=2))
    return out


def run_sweep(
    demo_dir: Path,
    variants: list[Variant],
    seeds: int,
    steps: int,
    size: str = "small",
    seed: int = 0,
    jobs: int = 1,
    name: str = "sweep",
) -> dict[str, Any]:
    """Every (variant, seed), ``jobs`` trainings at a time (seed 0 of every variant first); writes
    ``NAME.json`` after each and ``NAME.md`` at the end; the choice is made on validation rows."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from omni_model.demo.data_stages import BRIDGE_FRACTION

    lay = DemoLayout(Path(demo_dir).resolve())
    stores: dict[str, str | None] = {}
    for v in variants:
        store = None
        if v.fraction is not None and not math.isclose(v.fraction, BRIDGE_FRACTION[size]):
            store = str(build_fraction_bridge(lay, v.fraction, seed))
        stores[v.name] = store
    weights = {
        v.name: task_weights(Path(stores[v.name] or lay.store("train_bridge" if v.bridge else "train")), v.weight)
        for v in variants
    }
    out: dict[str, Any] = {v.name: {"variant": v.__dict__, "steps": steps, "seeds": {}} for v in variants}
    todo = [(v, k) for k in range(seeds) for v in variants]
    path = lay.root / f"{name}.json"
    with ProcessPoolExecutor(max(1, jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            pool.submit(_sweep_one, str(lay.root), v, stores[v.name], weights[v.name], k, seed, steps, size): (v, k)
            for v, k in todo
        }
        from concurrent.futures import as_completed

        for fut in as_completed(futures):
            v, k = futures[fut]
            res = fut.result()
            out[v.name]["seeds"][str(seed + k)] = res
            print(f"{v.name} seed {seed + k}: {res['seconds']:.0f} s", flush=True)
            path.write_text(json.dumps(summarize_sweep(out), indent=2))
    result = summarize_sweep(out)
    path.write_text(json.dumps(result, indent=2))
    (lay.root / f"{name}.md").write_text(format_sweep(result))
    plot_sweep(result, lay.root / f"{name}.png")
    return result


def summarize_sweep(out: dict[str, Any]) -> dict[str, Any]:
    """Adds mean ± std over seeds of test and validation rows, and the validation choice."""
    for v in out.values():
        seeds = list(v["seeds"].values())
        v["rows"] = report.aggregate_seeds([s["rows"] for s in seeds]) if seeds else []
        v["validation_rows"] = _aggregate_validation([s["validation"] for s in seeds]) if seeds else []
        with_split = [s["in_domain"]["test"] for s in seeds if "in_domain" in s]
        v["in_domain_test_rows"] = report.aggregate_seeds(with_split) if with_split else []
        v["seconds"] = [s["seconds"] for s in seeds]
    val = {n: v["validation_rows"] for n, v in out.items() if v["validation_rows"]}
    choice = choose_by_validation(val) if "plain" in val and len(val) > 1 else None
    return {"variants": out, "choice": choice}


def _aggregate_validation(per_seed: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    import numpy as np

    keyed: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rows in per_seed:
        for r in rows:
            keyed.setdefault((r["kind"], r["data"]), []).append(r)
    out = []
    for (kind, data), rows in keyed.items():
        agg: dict[str, Any] = {
            "kind": kind,
            "head": rows[0]["head"],
            "data": data,
            "n": rows[0]["n"],
            "n_seeds": len(rows),
        }
        for name in ("energy_mae_offset", "energy_mae", "forces_mae"):
            vals = [float(r[name]) for r in rows if r.get(name) is not None]
            if vals:
                agg[name] = float(np.mean(vals))
                agg[f"{name}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        out.append(agg)
    return out


def _num(score: Mapping[str, Any] | None, name: str) -> str:
    return "ref" if score is None else f"{score[name]:.3f}"


def format_sweep(result: Mapping[str, Any]) -> str:
    """Markdown: per variant its validation score and the OOD/in-domain test rows (mean ± std;
    in-domain on the held-out structures of the truth's test split when the run has them)."""
    choice = result.get("choice") or {}
    scores = choice.get("scores", {})
    lines = [
        "| variant | λ | fraction | weight | seeds | val score | val in-domain worst | "
        "test metals E-off | test metals F | test molecules E-off | test molecules F | "
        "test in-domain E (met/cry/mol) | test in-domain F (met/cry/mol) | s per run |",
        "|---" * 14 + "|",
    ]
    for name, v in result["variants"].items():
        var = v["variant"]
        rows = v["rows"]

        def cell(data: str, field: str, rows: list[dict[str, Any]] = rows) -> str:
            for r in rows:
                if r["kind"] == "cross-domain" and r["data"].startswith(data):
                    return report._cell(r, field)
            return "-"

        own = v.get("in_domain_test_rows") or [r for r in rows if r["kind"] == "same-domain"]
        ind_e, ind_f = (
            " / ".join(
                next((report._cell(r, f) for r in own if r["head"] == t), "-")
                for t in ("metals", "crystals", "molecules")
            )
            for f in ("energy_mae", "forces_mae")
        )
        sc = scores.get(name)
        lines.append(
            f"| {name}{' **(chosen)**' if name == choice.get('chosen') else ''} | {var['task_l2']:g} | "
            f"{'-' if not var['bridge'] else (var['fraction'] if var['fraction'] is not None else 'default')} | "
            f"{var['weight']:g} | {len(v['seeds'])} | {_num(sc, 'score')} | "
            f"{_num(sc, 'in_domain_worst')} | {cell('metals', 'energy_mae_offset')} | "
            f"{cell('metals', 'forces_mae')} | {cell('molecules', 'energy_mae_offset')} | "
            f"{cell('molecules', 'forces_mae')} | {ind_e} | {ind_f} | "
            f"{', '.join(f'{s:.0f}' for s in v['seconds'])} |"
        )
    return "\n".join(lines) + "\n"


SWEEP_PANELS = (
    ("metals", "energy_mae_offset", "metals under the crystals head: E after offsets", "meV/atom"),
    ("metals", "forces_mae", "metals under the crystals head: F", "meV/Å"),
    ("molecules", "energy_mae_offset", "molecules under the crystals head: E after offsets", "meV/atom"),
    ("molecules", "forces_mae", "molecules under the crystals head: F", "meV/Å"),
)
"""The cross-domain test rows the sweep plot shows: (data prefix, field, title, unit)."""


def sweep_points(result: Mapping[str, Any], data: str, field: str) -> list[tuple[str, float, float]]:
    """(variant, mean, std) in milli-units of one cross-domain test row, in the result's order."""
    out = []
    for name, v in result["variants"].items():
        for r in v.get("rows", []):
            if r["kind"] == "cross-domain" and r["data"].startswith(data) and r.get(field) is not None:
                out.append((name, 1000.0 * float(r[field]), 1000.0 * float(r.get(f"{field}_std") or 0.0)))
    return out


def plot_sweep(result: Mapping[str, Any], path: Path) -> Path:
    """Bars with mean ± std over seeds of the cross-domain test rows per sweep point; a dashed
    line at plain's mean and a dotted one at 30% below it (issue 18's goal); the validation
    choice in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = (result.get("choice") or {}).get("chosen")
    fig, axes = plt.subplots(1, len(SWEEP_PANELS), figsize=(5.2 * len(SWEEP_PANELS), 5.6))
    for ax, (data, field, title, unit) in zip(axes, SWEEP_PANELS):
        points = sweep_points(result, data, field)
        names = [n for n, _, _ in points]
        colours = ["#7f7f7f" if n == "plain" else ("#2ca02c" if n == chosen else "#1f77b4") for n in names]
        ax.bar(range(len(points)), [m for _, m, _ in points], yerr=[e for _, _, e in points], color=colours, capsize=3)
        plain = next((m for n, m, _ in points if n == "plain"), None)
        if plain is not None:
            ax.axhline(plain, color="k", ls="--", lw=0.8, label="plain (mean)")
            ax.axhline(0.7 * plain, color="r", ls=":", lw=1.0, label="goal: 30% below plain")
        ax.set_xticks(range(len(points)), names, rotation=60, ha="right", fontsize=8)
        for tick in ax.get_xticklabels():
            if tick.get_text() == chosen:
                tick.set_fontweight("bold")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # plain's lines, when the sweep has plain
        axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(
        "Transfer sweep on test rows: mean ± std over training seeds (green: chosen on validation rows)", fontsize=11
    )
    fig.tight_layout()
    from omni_data.report.plots import save_figure

    return save_figure(fig, path, dpi=100)
