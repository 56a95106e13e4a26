"""Turning bad inputs into quarantine entries and adding them up; nothing is dropped silently.

A partition's rejected inputs are written beside its shard (``STORE/quarantine/<shard>.parquet``
by ``store.writer``); this module decides *why* (schema problem, manifest filter, duplicate id)
and keeps the per-reason tallies that make ``records in = written + quarantined`` checkable.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from omni_data.schema import Record, Rejected, problem
from omni_data.store.writer import reason_kind

FilterFn = Callable[[Record, Any], "str | None"]


def load_filter_function() -> FilterFn | None:
    """``omni_data.harmonize.filters.apply_filters`` if that module and function exist, else None.

    Only the absence of that exact module is tolerated; an error inside it propagates.
    """
    try:
        module = importlib.import_module("omni_data.harmonize.filters")
    except ModuleNotFoundError as exc:
        if exc.name == "omni_data.harmonize.filters":
            return None
        raise
    return getattr(module, "apply_filters", None)


def filters_active(filters: Any) -> bool:
    """Whether a manifest ``Filters`` declares at least one filter."""
    if filters is None:
        return False
    if not dataclasses.is_dataclass(filters):
        raise TypeError(f"filters must be a manifest Filters dataclass, got {type(filters).__name__}")
    return any(getattr(filters, f.name) is not None for f in dataclasses.fields(filters))


def reject_record(record: Record, reason: str) -> Rejected:
    """The quarantine entry for a parsed record that cannot be stored."""
    return Rejected(record.source_file, record.source_index, reason, record.dataset, record.id,
                    {"n_atoms": record.n_atoms, "task": record.task})


@dataclass
class Triage:
    """Sorts one partition's reader output into records to store and rejected inputs.

    ``prevalidated``: the reader already ran ``problem()`` and ``normalized()`` on every record it
    yields (it declares ``RECORDS_VALIDATED = True``), so they are not run a second time here.
    """

    filters: Any = None
    filter_fn: FilterFn | None = None
    prevalidated: bool = False
    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    read: int = 0
    _seen: set[str] = field(default_factory=set)

    def add(self, item: Record | Rejected) -> None:
        self.read += 1
        if isinstance(item, Rejected):
            self.rejected.append(item)
            return
        why = None if self.prevalidated else problem(item)
        if why is None and not self.prevalidated:
            try:
                item.normalized()
            except (ValueError, TypeError) as exc:
                why = f"bad_shape:{exc}"
        if why is None and self.filter_fn is not None:
            why = self.filter_fn(item, self.filters)
            if why is not None and ":" not in why:
                why = f"filter:{why}"
        if why is None and item.id in self._seen:
            why = f"duplicate:id {item.id!r} repeated within its partition"
        if why is not None:
            self.rejected.append(reject_record(item, why))
            return
        self._seen.add(item.id)
        self.records.append(item)

    def reasons(self) -> dict[str, int]:
        return dict(Counter(reason_kind(r.reason) for r in self.rejected))


def reconcile(read: int, written: int, quarantined: int, where: str) -> None:
    """Raise if inputs do not add up (an internal error: something was lost)."""
    if read != written + quarantined:
        raise RuntimeError(f"{where}: {read} inputs read but {written} written + {quarantined} quarantined")
