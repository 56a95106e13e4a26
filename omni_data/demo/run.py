"""The end-to-end demo: corpus -> stores -> references -> bridge selection -> GFN1-xTB recompute ->
three training runs -> held-out evaluation -> table and plot.

Every stage calls another part of Omni through its CLI command module or Python API; this file
only wires paths together. See ``omni_data.demo.layout`` for where each output goes.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from omni_data.demo import generate as gen
from omni_data.demo import report
from omni_data.demo.layout import COMMON_TASK, RUNS, DemoLayout
from omni_data.demo.stages import StageFailed, StageRunner, cluster_args, echo_stderr, omni_data_cli, require

TRAIN_STEPS = {"ci": 200, "small": 2500}
"""Optimizer steps per training run (batch size 8)."""
BRIDGE_FRACTION = {"ci": 0.25, "small": 0.12}
"""Fraction of the training structures picked for the bridging set (by farthest-point sampling)."""
CALIBRATION_FRACTION = {"ci": 0.5, "small": 0.25}
"""Share of the held-out GFN1-xTB truth (hash of the record id, ``omni-data split`` split "val")
on which the per-element energy offsets of the cross-domain rows are fitted; the rest ("test")
is what those rows score. The two never overlap. ``ci`` takes half: its few metals must still
cover the seven metal elements."""
TASK_L2 = 1e-4
"""λ of the selective regularization ‖θ_T‖² on task-specific parameters only (runs 2 and 3); the
``small`` preset's default. Its penalty is part of the logged training loss."""


def _store_counts(path: Path) -> dict[str, Any]:
    from omni_data.store import Store

    store = Store(path)
    counts = store.catalog.counts
    return {"records": len(store), "by_task": dict(counts.get("by_task", {})),
            "quarantined": dict(counts.get("quarantined_by_reason", {}))}


def stage_ingest(lay: DemoLayout, dbs: dict[str, gen.Database], workers: int) -> dict[str, Any]:
    """Ingest each database's train and test file; check records in = records stored + quarantined."""
    require("omni_data.pipeline.ingest")
    from omni_data.cli.ingest import add_arguments, build_spec
    from omni_data.pipeline.cluster import ClusterConfig, dask_client
    from omni_data.pipeline.ingest import ingest
    import argparse

    plan = [(split_store, db, split) for db in dbs.values()
            for split_store, split in (("train", "train"), ("train_bridge", "train"), ("test", "test"))]
    out: dict[str, Any] = {}
    config = ClusterConfig(mode="sync") if workers <= 1 else ClusterConfig(mode="local", workers=workers)
    with dask_client(config) as client:
        for store_name, db, split in plan:
            parser = argparse.ArgumentParser()
            add_arguments(parser)
            argv = [db.manifest, "--source", db.sources[split], "--out", str(lay.store(store_name)),
                    "--shard-size", "64", "--no-progress"]
            print(f"$ omni-data ingest {' '.join(argv)}", flush=True)
            spec = build_spec(parser.parse_args(argv))
            summary = ingest(spec, client=client, progress=False)
            if not summary.ok:
                raise StageFailed(f"ingest of {db.sources[split]} failed: {summary.errors[:3]}")
            quarantined = sum(summary.quarantined.values())
            if summary.read != db.counts[split] or summary.written + quarantined != summary.read:
                raise StageFailed(f"{db.sources[split]}: generated {db.counts[split]}, read {summary.read}, "
                                  f"written {summary.written}, quarantined {quarantined}")
            out[f"{store_name}/{db.family}"] = {"read": summary.read, "written": summary.written,
                                                "quarantined": quarantined}
    for name in ("train", "train_bridge", "test"):
        out[name] = _store_counts(lay.store(name))
    return out


def stage_references(lay: DemoLayout, store: str, workers: int) -> dict[str, Any]:
    """Fit per-task elemental references; returns per task the elements fitted and those absent."""
    omni_data_cli(["references", lay.store(store), *cluster_args(workers)])
    from omni_data.store import Store

    section = Store(lay.store(store)).catalog.sections.get("references") or {}
    if not section:
        raise StageFailed(f"omni-data references wrote no 'references' section into {lay.store(store)}")
    return {task: {"elements": sorted(int(z) for z in fit.get("mu", {})), "absent": fit.get("absent", []),
                   "std_per_atom_before": fit.get("e_per_atom_std_before"),
                   "std_per_atom_after": fit.get("e_per_atom_std_after")} for task, fit in section.items()}


def stage_select(lay: DemoLayout, size: str, workers: int, seed: int) -> dict[str, Any]:
    """Describe both stores; pick the bridge from train (FPS) and take every test structure as truth."""
    for store in ("train", "test"):
        omni_data_cli(["describe", lay.store(store), *cluster_args(workers)])
    import pyarrow.parquet as pq

    n_tasks = 3
    omni_data_cli(["select-bridge", lay.store("train"), "--fraction", BRIDGE_FRACTION[size],
                   "--min-per-task", 2, "--seed", seed, "--out", lay.selection("bridge"), *cluster_args(workers)])
    omni_data_cli(["select-bridge", lay.store("test"), "--fraction", 1.0, "--min-per-task", 1,
                   "--seed", seed, "--out", lay.selection("truth"), *cluster_args(workers)])
    picks = {}
    for name in ("bridge", "truth"):
        table = pq.read_table(lay.selection(name) / "selection.parquet")
        by_task: dict[str, int] = {}
        for task in table.column("task").to_pylist():
            by_task[task] = by_task.get(task, 0) + 1
        if len(by_task) < n_tasks:
            raise StageFailed(f"{name} selection covers only tasks {sorted(by_task)}; expected all {n_tasks}")
        picks[name] = by_task
    return picks


def stage_recompute(lay: DemoLayout, workers: int, calibration: float = CALIBRATION_FRACTION["small"]) -> dict[str, Any]:
    """Emit GFN1-xTB jobs for both selections, run them locally, collect them under the common task."""
    out = {}
    for name, store in (("bridge", "train_bridge"), ("truth", "test_truth")):
        jobs = lay.jobs(name)
        omni_data_cli(["emit-jobs", lay.selection(name) / "selection.parquet", "--protocol", "gfn1-xtb", "--out", jobs])
        # status 1 = some jobs failed: they are kept with their reason and quarantined by collect-bridge
        rc = omni_data_cli(["run-local", jobs, "--method", "gfn1-xtb", *cluster_args(workers)], ok_codes=(0, 1))
        exists = (lay.store(store) / "catalog.json").exists()
        before = _store_counts(lay.store(store)) if exists else {"records": 0, "quarantined": {}}
        omni_data_cli(["collect-bridge", jobs, "--out", lay.store(store), "--task", COMMON_TASK])
        counts = _store_counts(lay.store(store))
        import pyarrow.parquet as pq

        selected = pq.read_metadata(lay.selection(name) / "selection.parquet").num_rows
        collected = counts["records"] - before["records"]
        quarantined = sum(counts["quarantined"].values()) - sum(before["quarantined"].values())
        if collected + quarantined != selected:
            raise StageFailed(f"{name}: {selected} selected but {collected} collected + {quarantined} quarantined")
        out[name] = {"selected": selected, "collected": collected, "quarantined": quarantined,
                     "run_local_status": rc, "store": counts}
    omni_data_cli(["split", lay.store("test_truth"), "--fractions", 0.0, calibration, 1.0 - calibration,
                   "--seed", 0, "--group-key", "id", *cluster_args(workers)])
    return out


def run_dir(lay: DemoLayout, run: str, k: int) -> Path:
    """``runs/<run>`` for the first seed, ``runs/<run>-seed<k>`` for the k-th further one."""
    return lay.run(run) if k == 0 else lay.run(f"{run}-seed{k}")


def train_config(lay: DemoLayout, run: str, size: str, seed: int, k: int = 0, bridge: bool | None = None,
                 task_l2: float | None = None, steps: int | None = None) -> Path:
    """The omni-train YAML of one run: the ``small`` preset with the demo's store and settings.

    ``bridge``, ``task_l2`` and ``steps`` default to what the run name implies (the three demo
    runs); the ablation (``omni_data.demo.ablation``) sets them explicitly.
    """
    from omni_model.config import PRESETS_DIR, config_from_dict

    cfg: dict[str, Any] = yaml.safe_load((PRESETS_DIR / "small.yaml").read_text()) or {}
    tasks = ["metals", "crystals", "molecules"]
    store = lay.store("train_bridge" if (run == "bridged" if bridge is None else bridge) else "train")
    cfg.setdefault("model", {})["tasks"] = tasks
    cfg.setdefault("data", {}).update(store=str(store), tasks=tasks, batch_size=8)
    cfg.setdefault("loss", {})["task_l2"] = (0.0 if run == "plain" else TASK_L2) if task_l2 is None else task_l2
    cfg.setdefault("run", {}).update(out_dir=str(run_dir(lay, run, k)), seed=seed + k, device="cpu",
                                     progress=False, resume=False)
    cfg["stages"] = [{"name": "all", "tasks": tasks, "steps": steps or TRAIN_STEPS[size]}]
    path = run_dir(lay, run, k) / "train.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config_from_dict(cfg, str(path))  # validate before writing
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def stage_train(lay: DemoLayout, run: str, size: str, seed: int, k: int = 0, **overrides: Any) -> dict[str, Any]:
    """One ``omni-train`` run (training seed ``seed + k``) from scratch; returns its config, final
    checkpoint and loss curve. ``overrides``: ``train_config``'s bridge, task_l2, steps."""
    require("omni_model.cli")
    from omni_model.cli import main as omni_train
    require("omni_model.threads").set_threads()  # $OMP_NUM_THREADS or 1, as omni-train (issue 20.8)

    if run_dir(lay, run, k).exists():
        shutil.rmtree(run_dir(lay, run, k))
    config = train_config(lay, run, size, seed, k, **overrides)
    print(f"$ omni-train {config}", flush=True)
    rc = omni_train([str(config)])
    if rc:
        raise StageFailed(f"omni-train {config} exited with status {rc}")
    checkpoint = run_dir(lay, run, k) / "final.pt"  # omni-train's end-of-run checkpoint
    if not checkpoint.is_file():
        raise StageFailed(f"omni-train wrote no {checkpoint}")
    return {"config": str(config), "checkpoint": str(checkpoint),
            "loss": training_loss(run_dir(lay, run, k) / "train.csv")}


def training_loss(csv_path: Path) -> list[list[float]]:
    """(step, training loss) pairs from omni-train's ``train.csv`` log."""
    import csv

    if not csv_path.is_file():
        raise StageFailed(f"omni-train wrote no training log {csv_path}")
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "step" not in rows[0] or "loss" not in rows[0]:
        raise StageFailed(f"{csv_path}: expected columns step and loss, got {list(rows[0]) if rows else 'no rows'}")
    return [[float(r["step"]), float(r["loss"])] for r in rows if r.get("loss") not in (None, "")]


def stage_evaluate(lay: DemoLayout, run: str, checkpoint: str, with_truth: bool) -> dict[str, Any]:
    """Same-domain rows on ``stores/test``; cross-domain rows on ``stores/test_truth`` if it exists."""
    from omni_data.demo.evaluate import cross_domain_rows, omni_predictor, same_domain_rows
    from omni_data.store import Store

    require("omni_model.calculator")
    predict = omni_predictor(Path(checkpoint))
    rows = same_domain_rows(Store(lay.store("test")), predict)
    if with_truth:
        rows += cross_domain_rows(Path(checkpoint), lay.store("test_truth"), COMMON_TASK)
    return {"rows": rows}


def run_demo(out: Path, size: str = "small", workers: int = 1, seed: int = 0, fresh: bool = True,
             seeds: int = 1) -> dict[str, Any]:
    """Run every stage into ``out``; returns the stage results. Never raises for a stage's failure.

    ``seeds``: training runs per variant (training seeds ``seed``, ``seed + 1``, ...; the data
    and the bridge stay those of ``seed``); the report gives mean ± std over them.
    """
    if size not in gen.SIZES:
        raise ValueError(f"unknown demo size {size!r}; known: {', '.join(gen.SIZES)}")
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    lay = DemoLayout(Path(out).resolve())
    if lay.root.exists() and any(lay.root.iterdir()):
        if not lay.stages_json.exists():  # never clear a folder the demo did not make
            raise ValueError(f"{lay.root} exists and is not a demo directory (no stages.json); pick another --out")
        if fresh:
            for sub in ("sources", "manifests", "stores", "recompute", "runs", "logs"):
                shutil.rmtree(lay.root / sub, ignore_errors=True)
            for old in (lay.metrics_json, lay.table_txt, lay.table_md, lay.plot_png, lay.root / "generation.json"):
                old.unlink(missing_ok=True)
    lay.root.mkdir(parents=True, exist_ok=True)
    runner = StageRunner(lay.logs, lay.stages_json, echo=echo_stderr)
    dbs: dict[str, gen.Database] = {}

    def generate() -> dict[str, Any]:
        dbs.update(gen.generate(lay.root, size=size, seed=seed, workers=workers))
        return {k: asdict(v) for k, v in dbs.items()}

    runner.run("generate", generate)
    runner.run("ingest", lambda: stage_ingest(lay, dbs, workers), needs=["generate"])
    runner.run("references", lambda: stage_references(lay, "train", workers), needs=["ingest"])
    runner.run("select", lambda: stage_select(lay, size, workers, seed), needs=["ingest"])
    runner.run("recompute", lambda: stage_recompute(lay, workers, CALIBRATION_FRACTION[size]), needs=["select"])
    runner.run("references_bridge", lambda: stage_references(lay, "train_bridge", workers), needs=["recompute"])
    metrics: dict[str, Any] = {}
    for run in RUNS:
        needs = ["recompute", "references_bridge"] if run == "bridged" else ["ingest", "references"]
        per_seed: dict[str, list[dict[str, Any]]] = {}
        losses: list[list[list[float]]] = []
        for k in range(int(seeds)):
            name = run if k == 0 else f"{run}_seed{k}"
            res = runner.run(f"train_{name}", lambda r=run, k=k: stage_train(lay, r, size, seed, k), needs=needs)
            ev = runner.run(f"evaluate_{name}", lambda r=run, res=res: stage_evaluate(
                lay, r, res.outputs["checkpoint"], runner.ok("recompute")), needs=[f"train_{name}"])
            if ev.status == "ok":
                per_seed[str(seed + k)] = ev.outputs["rows"]
                losses.append(res.outputs.get("loss", []))
        if per_seed:
            metrics[run] = {"rows": report.aggregate_seeds(list(per_seed.values())), "loss": losses[0],
                            "seeds": per_seed, "losses": losses}
    _write_json(lay.metrics_json, metrics)

    def write_report() -> dict[str, Any]:
        if not metrics:
            raise StageFailed("no run was evaluated: nothing to tabulate")
        explained = "\n\n" + report.explain() + "\n"
        _write_text(lay.table_txt, report.format_table(metrics) + explained)
        _write_text(lay.table_md, report.format_table(metrics, markdown=True) + explained)
        report.plot(metrics, lay.plot_png)
        return {"table": str(lay.table_txt), "markdown": str(lay.table_md), "plot": str(lay.plot_png)}

    runner.run("report", write_report)
    summary = {k: asdict(v) for k, v in runner.results.items()}
    print_summary(lay, runner, metrics)
    return summary


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(data, indent=2, default=str))


def print_summary(lay: DemoLayout, runner: StageRunner, metrics: dict[str, Any]) -> None:
    """The table, what the numbers mean, and where every output is."""
    print()
    if metrics:
        print(report.format_table(metrics))
        print()
        print(report.explain())
    not_ok = {k: v for k, v in runner.results.items() if v.status != "ok"}
    for name, res in not_ok.items():
        print(f"stage {name}: {res.status.upper()} - {res.detail}")
    print(f"""
Outputs under {lay.root}:
  sources/{{train,test}}/   the three generated databases (ASE db, extxyz, SPICE HDF5); generation.json
  manifests/              their manifests (what ingest reads)
  stores/train            ingested training store    stores/test        held-out store
  stores/train_bridge     train + bridging set (GFN1-xTB, task {COMMON_TASK})
  stores/test_truth       held-out structures recomputed with GFN1-xTB (cross-domain truth)
  recompute/{{bridge,truth}}/  selection.parquet + coverage, job dirs with results
  runs/{{{','.join(RUNS)}}}/  omni-train config, checkpoints, CSV logs
  results.txt|md|png      the table above and its plot; metrics.json the numbers
  stages.json, logs/      status, timing and full log of every stage""")
