"""A small measured ablation on an existing demo folder: plain vs bridge vs bridge + selective
regularization (and any λ), several training seeds each, scored like the demo's cross-domain rows.

    python -m omni_model.demo.ablation DEMO_DIR [--seeds 3] [--steps 200] [--l2 1e-4 ...] [--only V ...]
    python -m omni_model.demo.ablation DEMO_DIR --sweep [--sweep-l2 0 1e-5 1e-3 1e-1]
        [--sweep-fraction 0.03 0.3] [--sweep-weight 4] [--jobs 2]

``--sweep`` varies one factor at a time around the demo's default (bridge + λ = TASK_L2, the
folder's bridge fraction, sampling weight 1): λ, the bridge fraction (each fraction's bridge is
selected, recomputed and collected once into ``DEMO_DIR/sweep/bridge-<f>/``, with its own stage
ledger, so a re-run reuses it) and the sampling weight of the common task that holds the bridge.
Every run is scored on validation rows (``sweep.validation_rows``: the calibration split of the
held-out truth, never the test split; and the trainer's own validation split) and on the test
rows; the recommended setting is chosen on validation only (``choose_by_validation``).

It reuses the folder's stores (``train``, ``train_bridge``, ``test``, ``test_truth`` with its
calibration/test split) and trains only the variants, into ``DEMO_DIR/runs/ablation-<variant>[-seed<k>]``.
Writes ``ablation.json`` (rows per variant and seed, and their mean ± std) and ``ablation.md``.
"""

from __future__ import annotations

import argparse
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

__all__ = [
    "Variant",
    "default_variants",
    "run_ablation",
    "format_ablation",
    "sweep_variants",
    "parse_sweep_values",
    "fraction_layout",
    "build_fraction_bridge",
    "task_weights",
    "validation_rows",
    "in_domain_split_rows",
    "valid_csv_rows",
    "score_against_plain",
    "choose_by_validation",
    "run_sweep",
    "summarize_sweep",
    "format_sweep",
    "sweep_points",
    "plot_sweep",
    "main",
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


# ----------------------------------------------------------------------------- the sweep (issue 18 item 3)

OOD_ROWS = ("metals", "molecules")
"""Source domains scored under the common task's head (cross-domain rows)."""
IN_DOMAIN_BAND = 0.10
"""In-domain validation errors may be at most this much worse than plain (relative)."""


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


def validation_rows(
    checkpoint: str, truth_store: Path, head: str = COMMON_TASK, split: str = "val"
) -> list[dict[str, Any]]:
    """Cross-domain rows to choose by, none from the test split: the held-out truth's calibration
    split ``split`` under ``head``, per-element offsets fitted on those same records (in-sample:
    the test split is never touched)."""
    import numpy as np

    from omni_data.harmonize.splits import split_of
    from omni_model.data.dataset import open_store
    from omni_model.evaluation.transfer import structure_errors, transfer_row
    from omni_model.train.checkpoint import load_model

    model, _, _ckpt = load_model(checkpoint, use_ema=True)
    store = open_store(str(truth_store))
    idx = np.flatnonzero(np.asarray(split_of(store)) == split)
    err = structure_errors(model, store, [int(i) for i in idx], head, 16, None, checkpoint)
    rows: list[dict[str, Any]] = []
    for group in OOD_ROWS:
        r = err.select(head, group)
        if len(r):
            row = transfer_row(err, r, err, r, model.elements)
            rows.append(
                {
                    "kind": "validation cross-domain",
                    "head": head,
                    "data": group,
                    "n": row["n"],
                    "energy_mae_offset": row["energy_mae_offset"],
                    "forces_mae": row["forces_mae"],
                }
            )
    return rows


def in_domain_split_rows(checkpoint: str, lay: DemoLayout) -> dict[str, list[dict[str, Any]]]:
    """Same-domain rows (each task's held-out structures under its own head) split like the
    held-out truth: ``val`` = structures whose recomputed copy is in the truth's calibration split
    (to choose by), ``test`` = those in its test split (to report). Kind ``validation in-domain``
    and ``same-domain (test split)``; ``data`` is the task."""
    from omni_data.harmonize.splits import split_of
    from omni_data.store import Store
    from omni_model.demo.evaluate import omni_predictor, same_domain_rows

    truth = Store(lay.store("test_truth"))
    labels = split_of(truth)
    where = {str((r.metadata or {}).get("source_id")): str(lab) for r, lab in zip(truth, labels)}
    records = list(Store(lay.store("test")))
    predict = omni_predictor(Path(checkpoint))
    out = {}
    for split, kind in (("val", "validation in-domain"), ("test", "same-domain (test split)")):
        rows = same_domain_rows([r for r in records if where.get(r.id) == split], predict)
        out[split] = [{**r, "kind": kind, "data": r["head"]} for r in rows]
    return out


def valid_csv_rows(path: Path) -> list[dict[str, Any]]:
    """The last validation line per task of a trainer's ``valid.csv`` (energy per atom, forces)."""
    import csv

    last: dict[str, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            last[r["task"]] = r
    return [
        {
            "kind": "trainer validation",
            "head": t,
            "data": t,
            "n": int(r["n"]),
            "energy_mae": float(r["energy_mae_per_atom"]),
            "forces_mae": float(r["forces_mae"]),
        }
        for t, r in sorted(last.items())
    ]


def _value(rows: Sequence[Mapping[str, Any]], kind: str, data: str, name: str) -> float | None:
    for r in rows:
        if r["kind"] == kind and r["data"] == data and r.get(name) is not None:
            return float(r[name])
    return None


def score_against_plain(rows: Sequence[Mapping[str, Any]], plain: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Validation ratios to plain (means over seeds): per OOD row aligned energy and forces, the
    mean of those (``score``, lower is better) and the worst in-domain ratio (``in_domain_worst``,
    energy or forces of any task)."""
    ratios: dict[str, float] = {}
    for data in OOD_ROWS:
        for name in ("energy_mae_offset", "forces_mae"):
            a, b = (
                _value(rows, "validation cross-domain", data, name),
                _value(plain, "validation cross-domain", data, name),
            )
            if a is not None and b:
                ratios[f"{data} {name}"] = a / b
    worst = 0.0
    for r in plain:
        if r["kind"] == "validation in-domain":
            for name in ("energy_mae", "forces_mae"):
                a = _value(rows, "validation in-domain", r["data"], name)
                if a is not None and r.get(name):
                    worst = max(worst, a / float(r[name]))
    score = sum(ratios.values()) / len(ratios) if ratios else float("inf")
    return {"ratios": ratios, "score": score, "in_domain_worst": worst}


def choose_by_validation(
    validation: Mapping[str, Sequence[Mapping[str, Any]]], plain: str = "plain", band: float = IN_DOMAIN_BAND
) -> dict[str, Any]:
    """The recommended variant from validation rows only ({variant: rows averaged over seeds}):
    the lowest ``score`` among variants whose in-domain validation errors stay within ``band`` of
    plain; if none does, the lowest score overall, with ``within_band`` False."""
    if plain not in validation:
        raise ValueError(f"choosing needs the {plain!r} variant's validation rows; have {sorted(validation)}")
    scores = {name: score_against_plain(rows, validation[plain]) for name, rows in validation.items() if name != plain}
    if not scores:
        raise ValueError("choosing needs at least one variant besides plain")
    ok = {n: s for n, s in scores.items() if s["in_domain_worst"] <= 1.0 + band}
    pool = ok or scores
    best = min(pool, key=lambda n: pool[n]["score"])
    return {"chosen": best, "within_band": bool(ok), "scores": scores}


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
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


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
