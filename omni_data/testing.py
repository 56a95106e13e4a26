"""Reader contract checks, shipped in the package so every reader's tests reuse the same rules.

``check_reader(name, path, opts)`` runs one registered reader over one source the way the
pipeline does (``partitions`` then ``read`` per partition) and raises ``ContractError`` naming the
rule, the file and the record when the reader breaks the contract in ``readers/__init__.py``:

* partitions are ``Partition`` objects with unique keys and JSON-serialisable ``extra``;
* every yielded item is a ``Record`` or ``Rejected``; records pass ``record_checks.problem`` and already
  have schema dtypes and shapes; dataset/task come from the options;
* every record and every rejection carries ``source_file`` and a ``source_index >= 0``;
* record ids are ``"<dataset>:<source id>"`` and unique across the whole source;
* partitions cover every source position exactly once: reading with a small target gives the same
  positions, ids and counts as reading the whole source as one partition (counts reconcile);
* reading is deterministic: a partition read twice yields the same ids.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omni_data.readers import Partition, ReaderModule, ReadOptions, get_reader
from omni_data.record_checks import problem
from omni_data.schema import FIELDS, Record, Rejected

__all__ = ["ContractError", "ContractReport", "check_reader", "check_items", "read_all"]


class ContractError(AssertionError):
    """A reader broke the reader contract; the message names the rule, file and record."""


@dataclass
class ContractReport:
    """What a contract run saw: counts per partition, ids, and rejection reasons."""

    n_partitions: int
    n_records: int
    n_rejected: int
    ids: list[str] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def _fail(rule: str, where: str) -> ContractError:
    return ContractError(f"reader contract [{rule}]: {where}")


def _check_record(rec: Record, opts: ReadOptions, where: str) -> None:
    reason = problem(rec)
    if reason is not None:
        raise _fail("schema", f"{where}: {reason}")
    if rec.dataset != opts.dataset or rec.task != opts.task:
        raise _fail("options", f"{where}: dataset/task {rec.dataset!r}/{rec.task!r} not from options")
    if not rec.id.startswith(f"{opts.dataset}:") or len(rec.id) <= len(opts.dataset) + 1:
        raise _fail("id", f"{where}: id {rec.id!r} is not '<dataset>:<source id>'")
    if not isinstance(rec.numbers, np.ndarray) or rec.numbers.dtype != np.int64:
        raise _fail("dtype", f"{where}: numbers must be an int64 ndarray")
    if not isinstance(rec.positions, np.ndarray) or rec.positions.dtype != np.float64:
        raise _fail("dtype", f"{where}: positions must be a float64 ndarray")
    if rec.positions.shape != (rec.n_atoms, 3):
        raise _fail("shape", f"{where}: positions shape {rec.positions.shape}")
    for name in ("forces", "stress", "magmoms", "fixed", "tags"):
        value = getattr(rec, name)
        if value is None:
            continue
        spec = FIELDS[name]
        shape = tuple(rec.n_atoms if s == "n" else s for s in spec.shape)
        if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != np.dtype(spec.dtype):
            raise _fail("dtype", f"{where}: {name} must be {spec.dtype} {shape}")
    if rec.cell is None and bool(np.asarray(rec.pbc).any()):
        raise _fail("schema", f"{where}: periodic record without a cell")
    if rec.energy is not None and not isinstance(rec.energy, float):
        raise _fail("dtype", f"{where}: energy must be a Python float")
    if rec.charge is not None and not isinstance(rec.charge, float):
        raise _fail("dtype", f"{where}: charge must be a Python float")
    if rec.spin is not None and not isinstance(rec.spin, int):
        raise _fail("dtype", f"{where}: spin must be a Python int")
    try:
        json.dumps(rec.metadata)
    except (TypeError, ValueError) as exc:
        raise _fail("metadata", f"{where}: metadata is not JSON-serialisable ({exc})") from None


def _check_rejected(rej: Rejected, where: str) -> None:
    kind, sep, _detail = rej.reason.partition(":")
    if not sep or not kind:
        raise _fail("rejected", f"{where}: reason {rej.reason!r} is not '<kind>:<detail>'")
    try:
        json.dumps(rej.detail)
    except (TypeError, ValueError) as exc:
        raise _fail("rejected", f"{where}: detail is not JSON-serialisable ({exc})") from None


def check_items(items: Iterable[object], opts: ReadOptions, label: str) -> tuple[list[Record], list[Rejected]]:
    """Check each yielded item on its own; return the records and rejections in order."""
    records: list[Record] = []
    rejected: list[Rejected] = []
    for k, item in enumerate(items):
        if isinstance(item, Record):
            where = f"{label} item {k} ({item.source_file}#{item.source_index}, id {item.id!r})"
            _check_record(item, opts, where)
            records.append(item)
        elif isinstance(item, Rejected):
            where = f"{label} item {k} ({item.source_file}#{item.source_index})"
            _check_rejected(item, where)
            rejected.append(item)
        else:
            raise _fail("type", f"{label} item {k}: yielded {type(item).__name__}, not Record|Rejected")
        if not item.source_file:
            raise _fail("provenance", f"{where}: source_file is empty")
        if not isinstance(item.source_index, int) or item.source_index < 0:
            raise _fail("provenance", f"{where}: source_index {item.source_index!r} < 0")
    return records, rejected


def _module(reader: str | ReaderModule) -> ReaderModule:
    return get_reader(reader) if isinstance(reader, str) else reader


def read_all(name: str | ReaderModule, path: Path, opts: ReadOptions, target: int = 10**12) -> list[Record | Rejected]:
    """Every item of one source, reading partition by partition (convenience for tests)."""
    reader = _module(name)
    out: list[Record | Rejected] = []
    for part in reader.partitions(Path(path), target):
        out.extend(reader.read(part, opts))
    return out


def _positions(records: list[Record], rejected: list[Rejected]) -> list[tuple[str, int]]:
    return [(r.source_file, r.source_index) for r in records] + [(r.source_file, r.source_index) for r in rejected]


def check_reader(
    name: str | ReaderModule,
    path: Path,
    opts: ReadOptions,
    target: int | None = None,
    expected_records: int | None = None,
    expected_rejected: int | None = None,
) -> ContractReport:
    """Run reader ``name`` (a registered name or a module-like object) over ``path`` and check
    every contract rule; return what it read.

    ``target`` is the partition size to test (default: about a third of the source, so that
    multi-partition coverage is exercised whenever the source has more than one record).
    """
    reader = _module(name)
    path = Path(path)
    whole_parts = reader.partitions(path, 10**12)
    _check_partitions(whole_parts, path)
    whole: list[Record | Rejected] = []
    for part in whole_parts:
        whole.extend(reader.read(part, opts))
    w_records, w_rejected = check_items(whole, opts, f"{path} (whole)")
    n_total = len(w_records) + len(w_rejected)
    if target is None:
        target = max(1, math.ceil(n_total / 3))
    parts = reader.partitions(path, target)
    _check_partitions(parts, path)
    records: list[Record] = []
    rejected: list[Rejected] = []
    for i, part in enumerate(parts):
        r, j = check_items(reader.read(part, opts), opts, f"{path} partition {i} ({part.key})")
        records += r
        rejected += j
    if len(parts) > 0 and n_total > 0:
        again, _ = check_items(reader.read(parts[0], opts), opts, f"{path} partition 0 again")
        first, _ = check_items(reader.read(parts[0], opts), opts, f"{path} partition 0")
        if [r.id for r in again] != [r.id for r in first]:
            raise _fail("deterministic", f"{path}: partition 0 yields different ids when read twice")
    ids = [r.id for r in records]
    dup = [i for i, c in Counter(ids).items() if c > 1]
    if dup:
        raise _fail("unique ids", f"{path}: {len(dup)} duplicate ids, e.g. {dup[0]!r}")
    pos = _positions(records, rejected)
    dup_pos = [p for p, c in Counter(pos).items() if c > 1]
    if dup_pos:
        raise _fail("coverage", f"{path}: source position {dup_pos[0]} yielded more than once")
    w_pos = _positions(w_records, w_rejected)
    if sorted(pos) != sorted(w_pos):
        missing = sorted(set(w_pos) - set(pos))[:3]
        extra = sorted(set(pos) - set(w_pos))[:3]
        raise _fail("coverage", f"{path}: partitions (target {target}) miss {missing} / add {extra} vs one partition")
    if sorted(ids) != sorted(r.id for r in w_records):
        raise _fail("coverage", f"{path}: ids differ between partitioned and whole reads")
    if len(records) != len(w_records) or len(rejected) != len(w_rejected):
        raise _fail(
            "counts", f"{path}: {len(records)}+{len(rejected)} partitioned vs {len(w_records)}+{len(w_rejected)} whole"
        )
    if expected_records is not None and len(records) != expected_records:
        raise _fail("counts", f"{path}: {len(records)} records, expected {expected_records}")
    if expected_rejected is not None and len(rejected) != expected_rejected:
        raise _fail("counts", f"{path}: {len(rejected)} rejected, expected {expected_rejected}")
    return ContractReport(
        n_partitions=len(parts),
        n_records=len(records),
        n_rejected=len(rejected),
        ids=ids,
        reasons=Counter(r.reason.split(":", 1)[0] for r in rejected),
        records=records,
        rejected=rejected,
    )


def _check_partitions(parts: list[Partition], path: Path) -> None:
    if not isinstance(parts, list) or not all(isinstance(p, Partition) for p in parts):
        raise _fail("partitions", f"{path}: partitions() must return a list of Partition")
    keys = [p.key for p in parts]
    if len(set(keys)) != len(keys):
        raise _fail("partitions", f"{path}: partition keys are not unique")
    for p in parts:
        try:
            json.dumps(dict(p.extra))
        except (TypeError, ValueError):
            raise _fail("partitions", f"{path}: partition {p.key} extra is not JSON-serialisable") from None
