"""The last step every reader in this family shares: convert units, fix dtypes, validate.

Why: a reader yields either a valid, schema-typed ``Record`` or a ``Rejected`` with the reason from
``record_checks.problem``; doing that in one place keeps the readers to their format-specific parsing.
"""

from __future__ import annotations

from typing import Any

from omni_data.readers import ReadOptions
from omni_data.record_checks import problem
from omni_data.schema import Record, Rejected


def finish(record: Record, opts: ReadOptions, convert: bool = True) -> Record | Rejected:
    """Apply ``opts.convert`` (when the format's units are not fixed), normalise dtypes, validate.

    Returns the record, or a ``Rejected`` carrying ``problem(record)`` and the record's position.
    """
    try:
        if convert:
            record = opts.convert(record)
        reason = problem(record)
        if reason is None:
            record = record.normalized()
            reason = problem(record)
    except (ValueError, TypeError) as exc:
        reason = f"bad_shape:{exc}"
    if reason is not None:
        return Rejected(record.source_file, record.source_index, reason, opts.dataset, record.id, {})
    return record


def reject(
    opts: ReadOptions, source_file: str, index: int, reason: str, source_id: str = "", **detail: Any
) -> Rejected:
    """A ``Rejected`` for a frame that could not even become a ``Record``."""
    return Rejected(source_file, index, reason, opts.dataset, source_id, dict(detail))
