"""The demo's data stages: ingest, references, bridge selection, GFN1-xTB recompute.

Each calls the same ``omni_data`` library functions that the ``omni-data`` commands call (never
argparse; ARCHITECTURE.md "The CLI only parses arguments and calls one library function"); this
file only wires the demo folder's paths and checks the counts that come back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omni_model.demo import generate as gen
from omni_model.demo.layout import COMMON_TASK, DemoLayout
from omni_model.demo.stages import StageFailed, cluster_config

__all__ = [
    "store_counts",
    "ingest_database",
    "check_store_total",
    "stage_ingest",
    "stage_references",
    "stage_select",
    "recompute_selection",
    "stage_recompute",
]

SHARD_SIZE = 64
"""Records per shard of the demo stores (small, so the Dask stages have several partitions)."""
BRIDGE_FRACTION = {"ci": 0.25, "small": 0.12}
"""Fraction of the training structures picked for the bridging set (by farthest-point sampling)."""
CALIBRATION_FRACTION = {"ci": 0.5, "small": 0.25}
"""Share of the held-out GFN1-xTB truth (hash of the record id, ``omni-data split`` split "val")
on which the per-element energy offsets of the cross-domain rows are fitted; the rest ("test")
is what those rows score. The two never overlap. ``ci`` takes half: its few metals must still
cover the seven metal elements."""
PROTOCOL = "gfn1-xtb"
"""The common method of the bridge and of the cross-domain truth (the crystals' method)."""


def store_counts(path: Path) -> dict[str, Any]:
    """Records, records per task and quarantined records per reason of one store."""
    from omni_data.store import Store

    store = Store(path)
    counts = store.catalog.counts
    return {
        "records": len(store),
        "by_task": dict(counts.get("by_task", {})),
        "by_dataset": dict(counts.get("by_dataset", {})),
        "quarantined": dict(counts.get("quarantined_by_reason", {})),
    }


def ingest_database(db: gen.Database, split: str, store: Path, client: Any) -> dict[str, int]:
    """Ingest one generated source file into ``store``; checks generated = read = written + quarantined."""
    from omni_data.pipeline.request import (  # what ``omni-data ingest`` runs
        IngestRequest,
        run_ingest,
    )

    request = IngestRequest(
        target=db.manifest, out=Path(store), source=Path(db.sources[split]), shard_size=SHARD_SIZE, progress=False
    )
    summary = run_ingest(request, client=client, echo=lambda line: print(line, flush=True))
    if not summary.ok:
        raise StageFailed(f"ingest of {db.sources[split]} failed: {summary.errors[:3]}")
    quarantined = sum(summary.quarantined.values())
    # a resumed ingest skips the partitions already stored: then only the store total is checked
    if (summary.read != db.counts[split] and not summary.skipped) or summary.written + quarantined != summary.read:
        raise StageFailed(
            f"{db.sources[split]}: generated {db.counts[split]}, read {summary.read}, "
            f"written {summary.written}, quarantined {quarantined}"
        )
    return {
        "read": summary.read,
        "written": summary.written,
        "quarantined": quarantined,
        "partitions_already_stored": summary.skipped,
    }


def check_store_total(store: Path, dbs: dict[str, gen.Database], split: str) -> dict[str, Any]:
    """The store's records + quarantined equal the structures generated for ``split``; its counts."""
    counts = store_counts(store)
    generated = sum(db.counts[split] for db in dbs.values())
    held = counts["records"] + sum(counts["quarantined"].values())
    if held != generated:
        raise StageFailed(
            f"{store}: {generated} structures generated for {split} but {counts['records']} stored "
            f"+ {sum(counts['quarantined'].values())} quarantined"
        )
    return counts


def stage_ingest(lay: DemoLayout, dbs: dict[str, gen.Database], workers: int) -> dict[str, Any]:
    """Ingest each database's train file into ``stores/train`` and its test file into ``stores/test``."""
    from omni_data.pipeline.cluster import dask_client

    out: dict[str, Any] = {}
    with dask_client(cluster_config(workers)) as client:
        for store_name in ("train", "test"):
            for db in dbs.values():
                out[f"{store_name}/{db.family}"] = ingest_database(db, store_name, lay.store(store_name), client)
    for name in ("train", "test"):
        out[name] = check_store_total(lay.store(name), dbs, name)
    return out


def stage_references(lay: DemoLayout, store: str, workers: int) -> dict[str, Any]:
    """Fit per-task elemental references (``omni-data references``); per task the elements
    fitted and those absent."""
    from omni_data.harmonize.references import fit_store, write_references
    from omni_data.pipeline.cluster import dask_client
    from omni_data.store import Store

    path = lay.store(store)
    with dask_client(cluster_config(workers)) as client:
        fits = fit_store(str(path), ridge=0.0, client=client)
    write_references(Store(path), fits)
    section = Store(path).catalog.sections.get("references") or {}
    if not section:
        raise StageFailed(f"fitting references wrote no 'references' section into {path}")
    return {
        task: {
            "elements": sorted(int(z) for z in fit.get("mu", {})),
            "absent": fit.get("absent", []),
            "std_per_atom_before": fit.get("e_per_atom_std_before"),
            "std_per_atom_after": fit.get("e_per_atom_std_after"),
        }
        for task, fit in section.items()
    }


def stage_select(lay: DemoLayout, size: str, workers: int, seed: int) -> dict[str, Any]:
    """Describe both stores (``omni-data describe``); pick the bridge from train by FPS and take
    every test structure as truth (``omni-data select-bridge``). Picks per task of each."""
    import pyarrow.parquet as pq

    from omni_data.pipeline.cluster import dask_client
    from omni_data.select.descriptors import RDFSpec
    from omni_data.select.selection import SelectConfig, select_bridge, summary_text
    from omni_data.select.sidecars import describe_store

    with dask_client(cluster_config(workers)) as client:
        for store in ("train", "test"):
            describe_store(lay.store(store), "rdf", RDFSpec(cutoff=5.0, n_gaussians=8), client)
    plan = {"bridge": ("train", BRIDGE_FRACTION[size], 2), "truth": ("test", 1.0, 1)}
    picks = {}
    for name, (store, fraction, min_per_task) in plan.items():
        cfg = SelectConfig(
            stores=[str(lay.store(store))],
            out=str(lay.selection(name)),
            fraction=fraction,
            min_per_task=min_per_task,
            seed=seed,
        )
        print(summary_text(select_bridge(cfg)), flush=True)
        by_task: dict[str, int] = {}
        for task in pq.read_table(lay.selection(name) / "selection.parquet").column("task").to_pylist():
            by_task[task] = by_task.get(task, 0) + 1
        if len(by_task) < len(gen.FAMILIES):
            raise StageFailed(f"{name} selection covers only tasks {sorted(by_task)}; expected all {len(gen.FAMILIES)}")
        picks[name] = by_task
    return picks


def recompute_selection(lay: DemoLayout, name: str, store: Path, client: Any) -> dict[str, Any]:
    """Emit GFN1-xTB jobs for one selection, run them here, collect them into ``store`` under the
    common task (dataset ``bridge``). Finished and collected jobs are kept, so a resumed stage
    runs and collects only what is left; the totals count every job of the selection."""
    import pyarrow.parquet as pq

    from omni_data.recompute.collect import COLLECTED, collect_to_store
    from omni_data.recompute.emit import emit_selection
    from omni_data.recompute.jobs import iter_job_dirs
    from omni_data.recompute.local import run_jobs
    from omni_data.recompute.progress import JobProgress
    from omni_data.recompute.protocols import load_protocol

    jobs, selection = lay.jobs(name), lay.selection(name) / "selection.parquet"
    rows = emit_selection(selection, load_protocol(PROTOCOL), jobs)
    refused = sum(r["status"] == "refused" for r in rows)
    # pending, and "stale": left running by a demo that was cut short (its process is gone)
    results = run_jobs(
        jobs, PROTOCOL, client=client, states=("pending", "stale"), threads=1, progress=JobProgress(f"recompute {name}")
    )  # a line per job in the stage log
    failed = sum(r["state"] != "done" for r in results)  # kept with their reason; collect quarantines them
    found, _shard = collect_to_store(jobs, store, task=COMMON_TASK, dataset="bridge")
    counts = store_counts(store)
    settled = sum((d / COLLECTED).is_file() for d in iter_job_dirs(jobs))  # stored or quarantined
    collected = counts["by_dataset"].get("bridge", 0)
    selected = pq.read_metadata(selection).num_rows
    if settled + refused != selected:
        raise StageFailed(
            f"{name}: {selected} selected but {settled} collected or quarantined + {refused} "
            f"refused; not ready: {dict(found.not_ready) or 'none'}"
        )
    return {
        "selected": selected,
        "collected": collected,
        "quarantined": settled - collected,
        "refused": refused,
        "run_failed": failed,
        "store": counts,
    }


def stage_recompute(
    lay: DemoLayout, dbs: dict[str, gen.Database], workers: int, calibration: float = CALIBRATION_FRACTION["small"]
) -> dict[str, Any]:
    """``stores/train_bridge`` = the training files + the bridge recomputed with GFN1-xTB;
    ``stores/test_truth`` = every held-out structure recomputed, split into a calibration part
    ("val") and a test part ("test") by a hash of the record id (``omni-data split``)."""
    from omni_data.harmonize.grouping import plan_groups
    from omni_data.harmonize.splits import split_store
    from omni_data.pipeline.cluster import dask_client
    from omni_data.store import Store

    out: dict[str, Any] = {}
    with dask_client(cluster_config(workers)) as client:
        if not (lay.store("train_bridge") / "catalog.json").exists() or not lay.jobs("bridge").exists():
            for db in dbs.values():  # a second copy of train that the bridge is added to
                out[f"train_bridge/{db.family}"] = ingest_database(db, "train", lay.store("train_bridge"), client)
            check_store_total(lay.store("train_bridge"), dbs, "train")
        for name, store in (("bridge", "train_bridge"), ("truth", "test_truth")):
            out[name] = recompute_selection(lay, name, lay.store(store), client)
        truth = Store(lay.store("test_truth"))  # ``omni-data split STORE --group-key id``
        plan = plan_groups(truth, "id")
        split_store(
            truth.path,
            (0.0, calibration, 1.0 - calibration),
            0,
            plan.keys,
            "id",
            client=client,
            warnings=plan.warnings(),
        )
    return out
