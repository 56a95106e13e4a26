"""Routing records to tasks: a manifest may send records to different tasks by a scalar field.

SevenNet-Omni splits OMol25 by spin state (``omol25_low`` for multiplicity <= 2, ``omol25_high``
above); ``TaskRule`` expresses that as data so no reader or pipeline special-cases a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omni_data.schema import Record

__all__ = ["TaskRule", "assign_task"]


@dataclass(frozen=True)
class TaskRule:
    """Route a record to ``task`` when a scalar field lies in [min, max] (e.g. OMol25 by spin)."""

    field: str
    task: str
    min: float | None = None
    max: float | None = None

    def matches(self, record: Record) -> bool:
        value = getattr(record, self.field, None)
        if value is None:
            value = record.metadata.get(self.field)
        if value is None:
            return False
        value = float(value)
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


def assign_task(record: Record, rules: Sequence[TaskRule]) -> Record:
    """Set ``record.task`` from the first matching rule; keep it when none matches."""
    for rule in rules:
        if rule.matches(record):
            record.task = rule.task
            break
    return record
