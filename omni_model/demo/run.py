"""The end-to-end demo: corpus -> stores -> references -> bridge selection -> GFN1-xTB recompute ->
three training runs -> held-out evaluation -> table and plot.

Every stage calls another part of Omni through its library functions (the ones the ``omni-data``
and ``omni-train`` commands call); this file only wires the stages together. See
``omni_model.demo.layout`` for where each output goes.

Re-running the demo into the same folder resumes it: a stage that finished on the same inputs
(``ledger.json``, see ``omni_model.demo.ledger``) is reused, an interrupted training continues
from its last checkpoint, and an interrupted recompute runs only the jobs that are left.
``fresh=True`` (``omni-data demo --fresh``) starts over.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omni_model.demo import generate as gen
from omni_model.demo import report
from omni_model.demo.data_stages import (
    BRIDGE_FRACTION,
    CALIBRATION_FRACTION,
    PROTOCOL,
    SHARD_SIZE,
    stage_ingest,
    stage_recompute,
    stage_references,
    stage_select,
)
from omni_model.demo.layout import COMMON_TASK, RUNS, DemoLayout
from omni_model.demo.stages import ParallelStage, StageFailed, StageRunner
from omni_model.demo.training import (
    RUN_L2,
    SEEDS,
    TASK_L2,
    TRAIN_STEPS,
    preset_digest,
    run_dir,
    stage_evaluate,
    stage_train,
    train_config,
)

__all__ = [
    "BRIDGE_FRACTION",
    "CALIBRATION_FRACTION",
    "SEEDS",
    "TASK_L2",
    "TRAIN_STEPS",
    "prepare_folder",
    "print_summary",
    "run_demo",
    "stage_evaluate",
    "stage_train",
    "train_config",
]

OUTPUT_DIRS = ("sources", "manifests", "stores", "recompute", "runs", "logs")


def prepare_folder(lay: DemoLayout, fresh: bool) -> None:
    """Refuse a non-empty folder the demo did not make; with ``fresh`` clear what an earlier run wrote."""
    if lay.root.exists() and any(lay.root.iterdir()):
        if not (lay.stages_json.exists() or lay.ledger_json.exists()):  # never clear a folder the demo did not make
            raise ValueError(f"{lay.root} exists and is not a demo directory (no stages.json); pick another --out")
        if fresh:
            for sub in OUTPUT_DIRS:
                shutil.rmtree(lay.root / sub, ignore_errors=True)
            for old in (
                lay.metrics_json,
                lay.table_txt,
                lay.table_md,
                lay.plot_png,
                lay.root / "generation.json",
                lay.ledger_json,
            ):
                old.unlink(missing_ok=True)
    lay.root.mkdir(parents=True, exist_ok=True)


def _data_stages(runner: StageRunner, lay: DemoLayout, size: str, workers: int, seed: int) -> None:
    """generate, ingest, references, select, recompute, references_bridge."""
    dbs: dict[str, gen.Database] = {}

    def generate() -> dict[str, Any]:
        dbs.update(gen.generate(lay.root, size=size, seed=seed, workers=workers))
        return {k: asdict(v) for k, v in dbs.items()}

    res = runner.run(
        "generate",
        generate,
        options={"size": size, "seed": seed},
        owns=[lay.sources, lay.manifests, lay.root / "generation.json"],
    )
    if res.reused:  # the databases an earlier run wrote
        dbs.update({k: gen.Database(**v) for k, v in res.outputs.items()})
    runner.run(
        "ingest",
        lambda: stage_ingest(lay, dbs, workers),
        needs=["generate"],
        options={"shard_size": SHARD_SIZE},
        owns=[lay.store("train"), lay.store("test")],
        resumable=True,
    )
    runner.run("references", lambda: stage_references(lay, "train", workers), needs=["ingest"])
    runner.run(
        "select",
        lambda: stage_select(lay, size, workers, seed),
        needs=["ingest"],
        options={"fraction": BRIDGE_FRACTION[size], "seed": seed},
        owns=[lay.selection("bridge"), lay.selection("truth")],
    )
    runner.run(
        "recompute",
        lambda: stage_recompute(lay, dbs, workers, CALIBRATION_FRACTION[size]),
        needs=["generate", "select"],
        options={"protocol": PROTOCOL, "calibration": CALIBRATION_FRACTION[size], "task": COMMON_TASK},
        owns=[lay.store("train_bridge"), lay.store("test_truth"), lay.jobs("bridge"), lay.jobs("truth")],
        resumable=True,
    )
    runner.run("references_bridge", lambda: stage_references(lay, "train_bridge", workers), needs=["recompute"])


def _model_stages(
    runner: StageRunner, lay: DemoLayout, size: str, seed: int, seeds: int, workers: int = 1
) -> dict[str, Any]:
    """Per run and training seed: train_<run>[_seed<k>] (``workers`` trainings at a time, each in
    its own process with one thread) and evaluate_<run>[_seed<k>]; the metrics."""
    preset = preset_digest()
    names = {(run, k): run if k == 0 else f"{run}_seed{k}" for run in RUNS for k in range(int(seeds))}
    train = runner.run_parallel(
        [
            ParallelStage(
                f"train_{name}",
                functools.partial(stage_train, lay, run, size, seed, k, resume=True, label=f"train_{name}"),
                needs=["recompute", "references_bridge"] if run == "bridged" else ["ingest", "references"],
                options={
                    "steps": TRAIN_STEPS[size],
                    "seed": seed + k,
                    "task_l2": RUN_L2[run],
                    "preset": preset,
                },
                owns=[run_dir(lay, run, k)],
                resumable=True,
            )
            for (run, k), name in names.items()
        ],
        workers,
    )
    trained = dict(zip(names, train))
    metrics: dict[str, Any] = {}
    with_truth = runner.ok("recompute")
    for run in RUNS:
        per_seed: dict[str, list[dict[str, Any]]] = {}
        losses: list[list[list[float]]] = []
        for k in range(int(seeds)):
            name, res = names[(run, k)], trained[(run, k)]
            ev = runner.run(
                f"evaluate_{name}",
                lambda r=run, res=res, t=with_truth: stage_evaluate(lay, r, res.outputs["checkpoint"], t),
                needs=[f"train_{name}"],
                options={"with_truth": with_truth},
                inputs=[f"train_{name}", *(["recompute"] if with_truth else [])],
            )
            if ev.status == "ok":
                per_seed[str(seed + k)] = ev.outputs["rows"]
                losses.append(res.outputs.get("loss", []))
        if per_seed:
            metrics[run] = {
                "rows": report.aggregate_seeds(list(per_seed.values())),
                "loss": losses[0],
                "seeds": per_seed,
                "losses": losses,
            }
    return metrics


def run_demo(
    out: Path, size: str = "small", workers: int = 1, seed: int = 0, fresh: bool = False, seeds: int | None = None
) -> dict[str, Any]:
    """Run every stage into ``out``; returns the stage results. Never raises for a stage's failure.

    A stage that finished in an earlier run into ``out`` on the same inputs is reused, not run
    again; ``fresh`` clears the folder's outputs first. ``seeds``: training runs per variant
    (training seeds ``seed``, ``seed + 1``, ...; the data and the bridge stay those of
    ``seed``; default ``SEEDS[size]``); the report gives mean ± std over them. ``workers``:
    processes for the data stages, and trainings run at a time.
    """
    if size not in gen.SIZES:
        raise ValueError(f"unknown demo size {size!r}; known: {', '.join(gen.SIZES)}")
    seeds = SEEDS[size] if seeds is None else seeds
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    lay = DemoLayout(Path(out).resolve())
    prepare_folder(lay, fresh)
    runner = StageRunner(lay.logs, lay.stages_json, ledger=lay.ledger_json)
    _data_stages(runner, lay, size, workers, seed)
    metrics = _model_stages(runner, lay, size, seed, seeds, workers)
    _write_json(lay.metrics_json, metrics)

    def write_report() -> dict[str, Any]:
        if not metrics:
            raise StageFailed("no run was evaluated: nothing to tabulate")
        explained = "\n\n" + report.explain() + "\n"
        _write_text(lay.table_txt, report.format_table(metrics) + explained)
        _write_text(lay.table_md, report.format_table(metrics, markdown=True) + explained)
        report.plot(metrics, lay.plot_png)
        return {"table": str(lay.table_txt), "markdown": str(lay.table_md), "plot": str(lay.plot_png)}

    evaluated = [name for name in runner.results if name.startswith("evaluate_") and runner.ok(name)]
    runner.run("report", write_report, inputs=evaluated, owns=[lay.table_txt, lay.table_md, lay.plot_png])
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
  runs/{{{",".join(RUNS)}}}/  omni-train config, checkpoints, CSV logs
  results.txt|md|png      the table above and its plot; metrics.json the numbers
  stages.json, logs/      status, timing and full log of every stage
  ledger.json             what finished on which inputs: a re-run resumes (--fresh starts over)""")
