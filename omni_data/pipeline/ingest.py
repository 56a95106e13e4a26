"""Ingest: source files -> partitions -> one shard each, as Dask tasks; resumable.

The driver: ``plan`` turns the source files into one ``Job`` per partition, ``ingest`` runs each
job as a task (``pipeline.partition.run_partition``: read, validate, filter, write the shard and
quarantine part atomically) and adds each finished shard to the catalog as its task completes, so
an interrupted run keeps every completed shard; re-running skips partitions whose shard is already
catalogued (shard names derive from a hash of the partition's identity) and yields the same
store. ``pipeline.request.run_ingest`` (a user's request as data) is what the CLI, the demo and
``pipelines/`` call.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omni_data.harmonize.sanity import SanityBounds
from omni_data.pipeline import coverage
from omni_data.pipeline.partition import Job, PartitionResult, gc_paused, run_partition
from omni_data.pipeline.quarantine import reconcile
from omni_data.readers import (
    Partition,
    ReaderError,
    ReadOptions,
    find_sources,
    get_reader,
)
from omni_data.store import catalog as cat
from omni_data.store.writer import FORMATS, register_shard

# Job, PartitionResult, gc_paused and run_partition live in pipeline.partition (the per-partition
# task); they are re-exported here, where they were defined before.
__all__ = [
    "IngestSpec",
    "Job",
    "PartitionResult",
    "IngestSummary",
    "shard_name",
    "partition_hash",
    "plan",
    "gc_paused",
    "run_partition",
    "register_due",
    "ingest",
]

DEFAULT_SHARD_SIZE = 10_000


@dataclass
class IngestSpec:
    """Everything one ingest needs; built by the CLI from a manifest or from plain options."""

    store: Path
    reader: str
    source: Path
    options: ReadOptions
    globs: tuple[str, ...] | None = None
    filters: Any = None
    shard_size: int = DEFAULT_SHARD_SIZE
    formats: tuple[str, ...] = FORMATS
    manifest: dict[str, str] | None = None
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    bounds: SanityBounds | None = field(default_factory=SanityBounds)  # None: no sanity bounds


@dataclass
class IngestSummary:
    """Totals of one run; ``read == written + sum(quarantined)`` over processed partitions.

    ``labels_dropped``: per optional label, the stored records whose invalid value was dropped to
    None (``record_checks.drop_invalid_optional``); ``examples``: the first full reason of each
    quarantine kind; ``coverage``: per dataset, records stored this run with energy, forces,
    stress (``pipeline.coverage``); ``candidates``: energy-like source keys of records stored
    without energy; ``symmetrised``: stored records whose non-symmetric stress was symmetrised;
    ``warnings``: lines for the user (no energy, frames already in the store); ``notes``: other
    lines (the id index)."""

    partitions: int = 0
    skipped: int = 0
    done: int = 0
    read: int = 0
    written: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    labels_dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)
    symmetrised: int = 0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.interrupted

    @property
    def all_quarantined(self) -> bool:
        """Records were read this run and not one of them could be stored."""
        return self.read > 0 and self.written == 0

    def add(self, result: PartitionResult) -> None:
        if result.error:
            self.errors.append(result.error)
            return
        self.done += 1
        self.read += result.read
        self.written += result.written
        self.quarantined = dict(Counter(self.quarantined) + Counter(result.quarantined))
        self.labels_dropped = dict(Counter(self.labels_dropped) + Counter(result.labels_dropped))
        self.examples = {**result.examples, **self.examples}
        coverage.merge(self.coverage, result.coverage)
        self.candidates = dict(Counter(self.candidates) + Counter(result.candidates))
        self.symmetrised += result.symmetrised

    def top_reason(self) -> tuple[str, int, str] | None:
        """(kind, count, an example reason) of the most common quarantine kind; None if none."""
        if not self.quarantined:
            return None
        kind, count = max(sorted(self.quarantined.items()), key=lambda kv: kv[1])
        return kind, count, self.examples.get(kind, kind)

    def lines(self) -> list[str]:
        q = sum(self.quarantined.values())
        out = [
            f"partitions: {self.partitions} ({self.skipped} already in the store, {self.done} written, "
            f"{len(self.errors)} failed)",
            f"records read {self.read} = written {self.written} + quarantined {q}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(self.quarantined.items()))})" if q else ""),
        ]
        if self.labels_dropped:
            out.append(
                "labels dropped: "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.labels_dropped.items()))
                + " (invalid optional labels stored as unknown; the structures were kept)"
            )
        for dataset, counts in sorted(self.coverage.items()):
            out.append("labels " + coverage.line(dataset, counts))
        if self.symmetrised:
            out.append(
                f"stress symmetrised: {self.symmetrised} records had a non-symmetric 3x3 stress within "
                f"the tolerance; stored (σ + σᵀ)/2"
            )
        if "implausible" in self.quarantined:
            out.append(
                f"implausible values quarantined: {self.quarantined['implausible']}, "
                f"e.g. {self.examples.get('implausible', '')}"
            )
        out += self.warnings
        out += self.notes
        out += [
            f"time {self.seconds:.1f} s" + (f", {self.read / self.seconds:,.0f} records/s" if self.seconds > 0 else ""),
        ]
        out += [f"FAILED {e}" for e in self.errors]
        if self.interrupted:
            out.append("INTERRUPTED: re-run the same command to resume")
        return out


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:40] or "x"


def shard_name(dataset: str, part: Partition, phash: str) -> str:
    """``<dataset>-<file stem>-<start>-<hash10>``: derived only from the partition's identity, so
    the same partition always gets the same name, and names sort in source order."""
    stem = Path(part.path).name.split(".")[0]
    return f"{_safe(dataset)}-{_safe(stem)}-{part.start:09d}-{phash[:10]}"


def partition_hash(spec: IngestSpec, part: Partition) -> str:
    """Stable identity of a partition: dataset, task, reader, path relative to the source, range."""
    source = Path(spec.source)
    root = source if source.is_dir() else source.parent
    try:
        rel = str(Path(part.path).resolve().relative_to(root.resolve()))
    except ValueError:
        rel = str(Path(part.path).resolve())
    ident = [
        spec.options.dataset,
        spec.options.task,
        spec.reader,
        rel,
        part.start,
        part.stop,
        [[k, v] for k, v in part.extra],
    ]
    return hashlib.sha256(json.dumps(ident, default=str).encode("utf-8")).hexdigest()


def _partitions_of(reader_name: str, path: Path, target: int) -> tuple[list[Partition], str | None]:
    """One file's partitions, or an error naming it (runs on a worker when there are many files)."""
    try:
        parts = get_reader(reader_name).partitions(path, target)
    except (ReaderError, OSError, ValueError) as exc:
        return [], f"{path}: cannot be partitioned: {exc}"
    if not parts:
        return [], f"{path}: no records found (empty or unrecognised file)"
    return parts, None


def plan(spec: IngestSpec, client: Any = None) -> tuple[list[Job], list[str]]:
    """All partitions of all source files as jobs, plus errors for files that cannot be opened.

    With a Dask ``client`` and several files, the files are partitioned on the workers.
    """
    paths = find_sources(Path(spec.source), spec.reader, spec.globs)
    if client is not None and len(paths) > 1:
        n = len(paths)
        futures = client.map(_partitions_of, [spec.reader] * n, paths, [spec.shard_size] * n, pure=False)
        outcomes = client.gather(futures)
    else:
        outcomes = [_partitions_of(spec.reader, path, spec.shard_size) for path in paths]
    jobs: list[Job] = []
    errors: list[str] = []
    for parts, error in outcomes:
        if error is not None:
            errors.append(error)
        for part in parts:
            h = partition_hash(spec, part)
            jobs.append(Job(part, shard_name(spec.options.dataset, part, h), h))
    return jobs, errors


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for pkg in ("omni", "numpy", "pyarrow", "lmdb", "msgpack", "ase", "dask", "distributed"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _record_run(spec: IngestSpec, summary: IngestSummary, started: str) -> None:
    run = {
        "kind": "ingest",
        "command": spec.command,
        "manifest": spec.manifest,
        "reader": spec.reader,
        "source": str(spec.source),
        "dataset": spec.options.dataset,
        "task": spec.options.task,
        "shard_size": spec.shard_size,
        "formats": list(spec.formats),
        "sanity_bounds": None if spec.bounds is None else asdict(spec.bounds),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": os.uname().nodename,
        "versions": _versions(),
        "status": "ok" if summary.ok else "interrupted" if summary.interrupted else "failed",
        "summary": {k: v for k, v in asdict(summary).items() if k != "errors"} | {"errors": summary.errors[:50]},
    }
    cat.add_run(spec.store, run)


REGISTER_BATCH = 16  # shards per catalog rewrite
REGISTER_SECONDS = 2.0  # ...or at least this often
# A catalog rewrite costs O(shards in the store) (1.2 s at 24,000 shards): after each one, wait at
# least this many times its duration before the next, so registering stays under ~10% of the
# driver's time however large the store grows (one shard per rewrite otherwise, once a rewrite
# takes longer than REGISTER_SECONDS).
REGISTER_OVERHEAD = 10.0


def register_due(pending: int, since: float, last_cost: float) -> bool:
    """Whether the driver rewrites the catalog now, with ``pending`` finished shards waiting,
    ``since`` seconds after the last rewrite ended, which took ``last_cost`` seconds."""
    return since >= REGISTER_OVERHEAD * last_cost and (pending >= REGISTER_BATCH or since >= REGISTER_SECONDS)


def ingest(
    spec: IngestSpec,
    client: Any = None,
    progress: bool = True,
    on_result: Callable[[PartitionResult], None] | None = None,
) -> IngestSummary:
    """Run ``spec``: with a ``distributed.Client`` as Dask tasks, else in this process.

    Finished shards are registered in batches (``REGISTER_BATCH`` or every ``REGISTER_SECONDS``,
    and never sooner than ``REGISTER_OVERHEAD`` times the last rewrite's duration) so the catalog
    is not rewritten once per shard; ``on_result`` is called on the driver after
    each partition's shard is registered. KeyboardInterrupt cancels pending work, registers what
    finished and leaves a resumable store.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    spec.store = Path(spec.store)
    spec.store.mkdir(parents=True, exist_ok=True)
    # ids carry the file's path relative to the source root, so equal names in two folders stay apart
    source = Path(spec.source)
    spec.options.options.setdefault("root", str(source if source.is_dir() else source.parent))
    if not (spec.store / cat.CATALOG_NAME).is_file():
        cat.update_catalog(spec.store, lambda data: None)  # readers can open the store from the start
    summary = IngestSummary()
    jobs, errors = plan(spec, client)
    summary.errors.extend(errors)
    done = {s.get("partition_hash") for s in cat.Catalog(spec.store).shards}
    todo = [j for j in jobs if j.partition_hash not in done]
    summary.partitions, summary.skipped = len(jobs), len(jobs) - len(todo)
    old_shards = [s["name"] for s in cat.Catalog(spec.store).shards]
    args = (str(spec.store), spec.reader)
    bar = tqdm(total=len(todo), unit="shard", disable=not progress, desc=f"ingest {spec.options.dataset}")
    pending: list[PartitionResult] = []
    last_flush = [time.monotonic(), 0.0]  # when the last rewrite ended, how long it took

    def flush() -> None:
        batch = [r for r in pending]
        pending.clear()
        started = time.monotonic()
        entries = [r.entry for r in batch if r.entry is not None]
        if entries:
            try:
                register_shard(spec.store, *entries)
            except ValueError as exc:
                for r in batch:
                    r.error = r.error or f"{r.partition}: not registered: {exc}"
        ended = time.monotonic()
        last_flush[:] = [ended, ended - started]
        for r in batch:
            summary.add(r)
            if on_result is not None:
                on_result(r)

    def finish(result: PartitionResult) -> None:
        pending.append(result)
        bar.update(1)
        if register_due(len(pending), time.monotonic() - last_flush[0], last_flush[1]):
            flush()

    futures: list[Any] = []
    try:
        if client is None:
            for job in todo:
                finish(run_partition(*args, job, spec.options, spec.filters, spec.formats, spec.bounds))
        else:
            from distributed import as_completed

            futures = [
                client.submit(
                    run_partition,
                    *args,
                    job,
                    spec.options,
                    spec.filters,
                    spec.formats,
                    spec.bounds,
                    key=f"ingest-{job.shard}",
                    pure=False,
                )
                for job in todo
            ]
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as exc:  # a worker died: name the partition
                    shard = future.key.removeprefix("ingest-")
                    result = PartitionResult(shard=shard, partition=shard, error=f"shard {shard}: worker failed: {exc}")
                finish(result)
        flush()
    except KeyboardInterrupt:
        summary.interrupted = True
        for future in futures:
            future.cancel()
        raise
    finally:
        if pending:  # shards that finished before an interrupt: keep them
            on_result = None
            flush()
        bar.close()
        summary.seconds = time.perf_counter() - t0
        _record_run(spec, summary, started)
    q = sum(summary.quarantined.values())
    reconcile(summary.read, summary.written, q, f"ingest into {spec.store}")
    _add_warnings(spec, summary, old_shards)
    return summary


def _add_warnings(spec: IngestSpec, summary: IngestSummary, old_shards: list[str]) -> None:
    """A dataset stored without any energy; frames whose geometry the store already had."""
    from omni_data.pipeline.framehash import find_repeats

    for dataset, counts in sorted(summary.coverage.items()):
        line = coverage.missing_energy_warning(dataset, counts, summary.candidates, spec.manifest is not None)
        if line is not None:
            summary.warnings.append(line)
    done = set(old_shards)
    new = sorted(s["name"] for s in cat.Catalog(spec.store).shards if s["name"] not in done)
    repeats = find_repeats(spec.store, old_shards, new)
    if (line := repeats.warning()) is not None:
        summary.warnings.append(line)


# --- what the CLI, the demo and pipelines/ call ---------------------------------------------------
