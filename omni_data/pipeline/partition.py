"""One partition: read it, triage it, write its shard and quarantine part; runs on a worker.

``run_partition`` is the Dask task that ``pipeline.ingest`` submits for every partition: it reads
the partition, validates each record (``record_checks.problem``, which drops invalid optional labels to
None, and ``record_checks.close_contact``, atoms under 0.1 Å apart), applies the manifest's filters, and
writes the shard, its quarantine part (``store.write_shard_files``, atomic) and its frame-hash
sidecar. It reports back a small ``PartitionResult``; the driver (``pipeline.ingest``) registers
the shard in the catalog.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_data.harmonize.filters import apply_filters
from omni_data.harmonize.sanity import SanityBounds
from omni_data.pipeline import coverage
from omni_data.pipeline.quarantine import Triage, filters_active, reconcile
from omni_data.readers import READERS, Partition, ReadOptions, get_reader
from omni_data.schema import Rejected
from omni_data.store.writer import write_shard_files
from omni_data.tasks import assign_task

__all__ = ["Job", "PartitionResult", "gc_paused", "run_partition"]

DEFAULT_BOUNDS = SanityBounds()


@dataclass(frozen=True)
class Job:
    """One partition and the shard it becomes."""

    partition: Partition
    shard: str
    partition_hash: str


@dataclass
class PartitionResult:
    """What a task reports back: small, picklable, no records."""

    shard: str
    partition: str
    read: int = 0
    written: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    labels_dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    entry: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)
    symmetrised: int = 0


_GC_LOCK = threading.Lock()
_GC_HOLDERS = [0, False]  # partitions running in this process, whether the GC was on before the first


@contextlib.contextmanager
def gc_paused() -> Any:
    """Pause Python's cyclic garbage collector while a partition is parsed and written.

    A partition allocates millions of small objects that hold no reference cycles (records,
    arrays, dicts); the collector finds nothing in them but rescans the growing heap again and
    again (5-10% of ingest time). Reference counting still frees everything; the collector is
    switched back on (if it was on) when the last partition running in this process ends.
    """
    with _GC_LOCK:
        if _GC_HOLDERS[0] == 0:
            _GC_HOLDERS[1] = gc.isenabled()
            gc.disable()
        _GC_HOLDERS[0] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_HOLDERS[0] -= 1
            if _GC_HOLDERS[0] == 0 and _GC_HOLDERS[1]:
                gc.enable()


def run_partition(
    store: str,
    reader_name: str,
    job: Job,
    options: ReadOptions,
    filters: Any,
    formats: Sequence[str],
    bounds: SanityBounds | None = DEFAULT_BOUNDS,
) -> PartitionResult:
    """Read, triage and write one partition (runs on a worker). Failures come back as ``error``."""
    t0 = time.perf_counter()
    result = PartitionResult(shard=job.shard, partition=job.partition.key)
    try:
        with gc_paused():
            _run(store, reader_name, job, options, filters, formats, result, bounds)
    except Exception as exc:  # one bad partition must not stop the others: report it
        name = job.partition.path if job.partition.path in str(exc) else f"{job.partition.path} [{job.partition.key}]"
        result.error = f"{name}: {type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - t0
    return result


def _run(
    store: str,
    reader_name: str,
    job: Job,
    options: ReadOptions,
    filters: Any,
    formats: Sequence[str],
    result: PartitionResult,
    bounds: SanityBounds | None = DEFAULT_BOUNDS,
) -> None:
    """The body of ``run_partition``: fills ``result`` or raises. Writes the shard, its
    quarantine and its frame-hash sidecar (``pipeline.framehash``); the catalog entry carries
    the shard's label coverage (``coverage.SHARD_KEY``)."""
    from omni_data.pipeline.framehash import write_hashes

    filter_fn = apply_filters if filters_active(filters) else None
    reader = get_reader(reader_name)
    prevalidated = READERS[reader_name].records_validated
    triage = Triage(filters=filters, filter_fn=filter_fn, prevalidated=prevalidated, bounds=bounds)
    for item in reader.read(job.partition, options):
        if options.task_rules and not isinstance(item, Rejected):
            assign_task(item, options.task_rules)
        triage.add(item)
    info = write_shard_files(
        Path(store),
        job.shard,
        triage.records,
        triage.rejected,
        formats,
        partition=job.partition.key,
        partition_hash=job.partition_hash,
        validate=False,
    )
    reconcile(triage.read, info.records, info.quarantined, f"partition {job.partition.key}")
    write_hashes(Path(store), job.shard, triage.records)
    result.read, result.written = triage.read, info.records
    result.coverage = coverage.count(triage.records)
    result.quarantined, result.entry = triage.reasons(), {**info.entry(), coverage.SHARD_KEY: result.coverage}
    result.labels_dropped, result.examples = dict(triage.dropped), triage.examples()
    result.candidates, result.symmetrised = coverage.count_candidates(triage.records), triage.symmetrised
