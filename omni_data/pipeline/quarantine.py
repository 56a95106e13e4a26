"""Turning bad inputs into quarantine entries and adding them up; nothing is dropped silently.

A partition's rejected inputs are written beside its shard (``STORE/quarantine/<shard>.parquet``
by ``store.writer``); this module decides *why* (schema problem, manifest filter, duplicate id)
and keeps the per-reason tallies that make ``records in = written + quarantined`` checkable.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omni_data.harmonize.sanity import SanityBounds, sanity_problem, was_symmetrised
from omni_data.record_checks import close_contacts, problem
from omni_data.schema import DROPPED_LABELS_KEY, Record, Rejected
from omni_data.store.writer import reason_kind

__all__ = ["filters_active", "reject_record", "Triage", "reconcile"]

FilterFn = Callable[[Record, Any], "str | None"]


def filters_active(filters: Any) -> bool:
    """Whether a manifest ``Filters`` declares at least one filter."""
    if filters is None:
        return False
    if not dataclasses.is_dataclass(filters):
        raise TypeError(f"filters must be a manifest Filters dataclass, got {type(filters).__name__}")
    return any(getattr(filters, f.name) is not None for f in dataclasses.fields(filters))


def reject_record(record: Record, reason: str) -> Rejected:
    """The quarantine entry for a parsed record that cannot be stored."""
    return Rejected(
        record.source_file,
        record.source_index,
        reason,
        record.dataset,
        record.id,
        {"n_atoms": record.n_atoms, "task": record.task},
    )


TRIAGE_BATCH = 1024
"""Records whose atom distances are checked together (``record_checks.close_contacts``)."""


@dataclass
class Triage:
    """Sorts one partition's reader output into records to store and rejected inputs.

    ``prevalidated``: the reader already ran ``problem()`` and ``normalized()`` on every record it
    yields (its ``ReaderSpec.records_validated`` is True), so they are not run a second time here.
    Every record, prevalidated or not, is then checked for atoms closer than the physical floor
    (``record_checks.close_contacts``, in batches of ``TRIAGE_BATCH``: ``records``, ``rejected`` and
    ``dropped`` finish the pending batch when read), then the sanity ``bounds``
    (``harmonize.sanity``; None: not checked), then the manifest filters, then duplicates.
    ``dropped`` counts, per label, the stored records whose invalid optional label was dropped to
    None (``record_checks.drop_invalid_optional``, run by ``problem()`` here or in the reader);
    ``symmetrised`` the stored records whose non-symmetric stress was symmetrised.
    """

    filters: Any = None
    filter_fn: FilterFn | None = None
    prevalidated: bool = False
    bounds: SanityBounds | None = None
    read: int = 0
    symmetrised: int = 0
    _records: list[Record] = field(default_factory=list, repr=False)
    _rejected: list[Rejected] = field(default_factory=list, repr=False)
    _dropped: Counter = field(default_factory=Counter, repr=False)
    _pending: list[tuple[Record | Rejected, str | None]] = field(default_factory=list, repr=False)
    _seen: set[str] = field(default_factory=set, repr=False)

    @property
    def records(self) -> list[Record]:
        self.flush()
        return self._records

    @property
    def rejected(self) -> list[Rejected]:
        self.flush()
        return self._rejected

    @property
    def dropped(self) -> Counter:
        self.flush()
        return self._dropped

    def add(self, item: Record | Rejected) -> None:
        self.read += 1
        why = None
        if not isinstance(item, Rejected) and not self.prevalidated:
            why = problem(item)
            if why is None:
                try:
                    item.normalized()
                except (ValueError, TypeError) as exc:
                    why = f"bad_shape:{exc}"
        self._pending.append((item, why))
        if len(self._pending) >= TRIAGE_BATCH:
            self.flush()

    def flush(self) -> None:
        """Finish the pending items in input order: atom distances (batched), filters, duplicates."""
        pending, self._pending = self._pending, []
        valid = [item for item, why in pending if why is None and not isinstance(item, Rejected)]
        contact = iter(close_contacts(valid)) if valid else iter(())
        for item, why in pending:
            if isinstance(item, Rejected):
                self._rejected.append(item)
                continue
            if why is None:
                why = next(contact)
            if why is None and self.bounds is not None:
                why = sanity_problem(item, self.bounds)
            if why is None and self.filter_fn is not None:
                why = self.filter_fn(item, self.filters)
                if why is not None and ":" not in why:
                    why = f"filter:{why}"
            if why is None and item.id in self._seen:
                why = f"duplicate:id {item.id!r} repeated within its partition"
            if why is not None:
                self._rejected.append(reject_record(item, why))
                continue
            self._seen.add(item.id)
            self._records.append(item)
            if was_symmetrised(item):
                self.symmetrised += 1
            notes = item.metadata.get(DROPPED_LABELS_KEY)
            if notes:
                self._dropped.update(notes.keys())

    def reasons(self) -> dict[str, int]:
        """Rejected inputs per reason kind (the part of the reason before the first colon)."""
        return dict(Counter(reason_kind(r.reason) for r in self.rejected))

    def examples(self) -> dict[str, str]:
        """The first full reason of each kind, for messages (``"bad_value:spin ..."``)."""
        out: dict[str, str] = {}
        for r in self.rejected:
            out.setdefault(reason_kind(r.reason), r.reason)
        return out


def reconcile(read: int, written: int, quarantined: int, where: str) -> None:
    """Raise if inputs do not add up (an internal error: something was lost)."""
    if read != written + quarantined:
        raise RuntimeError(f"{where}: {read} inputs read but {written} written + {quarantined} quarantined")
