"""Whether a record can be stored: the checks every ingest runs on every record.

``problem`` names why a record cannot be stored (``"<kind>:<detail>"``, the quarantine's reason)
and drops invalid *optional* labels to None on the way (``drop_invalid_optional``);
``close_contact(s)`` finds atoms nearer than ``schema.MIN_INTERATOMIC_DISTANCE``. What a record
*is* (fields, units, dtypes) stays in ``omni_data.schema``; this module only judges one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from omni_data.schema import (
    DROPPED_LABELS_KEY,
    ENERGY_KINDS,
    FIELDS,
    LABELS,
    MIN_INTERATOMIC_DISTANCE,
    OPTIONAL_LABELS,
    Record,
    shape_of,
)

__all__ = [
    "problem",
    "optional_label_problem",
    "drop_invalid_optional",
    "close_contact",
    "close_contacts",
]

_F8, _BOOL = np.dtype(np.float64), np.dtype(bool)
_LABEL_ARRAYS = tuple((name, shape_of(FIELDS[name].shape)) for name in ("forces", "stress") if name in LABELS)
"""The array-valued training labels and their shape for n atoms."""


def _any_true(pbc: Any) -> bool:
    """``np.asarray(pbc).any()``, without the numpy call for the usual 3-element bool array."""
    if type(pbc) is np.ndarray and pbc.dtype == _BOOL and pbc.ndim == 1:
        return True in pbc.tolist()
    return bool(np.asarray(pbc).any())


def _zero_volume(cell: np.ndarray) -> bool:
    """``abs(det(cell)) < 1e-6`` for a finite float cell of 9 values.

    The cofactor expansion in Python floats is exact to ~1e-15 of the largest entry cubed; only
    when it is not far above the threshold is numpy's determinant asked, so the answer is numpy's."""
    return _cell_volume_problem(cell) == _ZERO_VOLUME


_HUGE_CELL = 1e100  # Å; beyond this the cubes below would overflow Python floats (OverflowError)
_ZERO_VOLUME = "bad_value:periodic cell with zero volume"


def _cell_volume_problem(cell: np.ndarray) -> str | None:
    """Why a periodic ``cell`` (finite, 9 values) has no usable volume: zero (below 1e-6 Å³, see
    ``_zero_volume``), or too large to be a number (entries near 1e308 Å); None if it is fine."""
    a, b, c, d, e, f, g, h, i = flat = cell.reshape(-1).tolist()
    scale = max(max(flat), -min(flat), 1.0)
    if scale > _HUGE_CELL:
        with np.errstate(all="ignore"):
            volume = float(np.linalg.det(cell.reshape(3, 3)))
        if not math.isfinite(volume):
            return f"bad_value:periodic cell volume overflows (entries up to {scale:.3g} Å)"
        return _ZERO_VOLUME if abs(volume) < 1e-6 else None
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if abs(det) > 1e-4 * scale**3:
        return None
    return _ZERO_VOLUME if abs(np.linalg.det(cell.reshape(3, 3))) < 1e-6 else None


def problem(record: Record) -> str | None:
    """Why ``record`` cannot be stored, as a short reason string; ``None`` if it is valid.

    Reasons are stable identifiers followed by detail, e.g. ``"nonfinite:forces"``; the quarantine
    groups on the part before the first colon. An invalid *optional* label is not a reason: once
    everything else has passed, it is dropped to None (``drop_invalid_optional``, which notes it
    in ``record.metadata``), so ``record`` may be changed by this call.
    """
    z = record.numbers
    if type(z) is not np.ndarray:
        z = np.asarray(z)
    n = z.size
    if n == 0:
        return "empty:zero atoms"
    if not record.id:
        return "missing:id"
    if z.ndim == 1 and z.dtype.kind in "iu" and n <= 1024:  # min/max of a short list: no numpy calls
        zl = z.tolist()
        lo, hi = min(zl), max(zl)
        if lo < 1 or hi > 118:
            return f"bad_value:atomic number out of 1..118 ({lo}..{hi})"
    elif z.min() < 1 or z.max() > 118:
        return f"bad_value:atomic number out of 1..118 ({int(z.min())}..{int(z.max())})"
    pos = record.positions
    if not (type(pos) is np.ndarray and pos.dtype == _F8):
        pos = np.asarray(pos, dtype=float)
    if pos.shape not in ((n, 3), (n * 3,)):
        return f"bad_shape:positions {pos.shape} for {n} atoms"
    if not np.isfinite(pos).all():
        return "nonfinite:positions"
    if record.cell is not None:
        cell = record.cell
        if not (type(cell) is np.ndarray and cell.dtype == _F8):
            cell = np.asarray(cell, dtype=float)
        if cell.size != 9:
            return f"bad_shape:cell {cell.shape}"
        if not np.isfinite(cell).all():
            return "nonfinite:cell"
        if _any_true(record.pbc) and (why := _cell_volume_problem(cell)) is not None:
            return why
    elif _any_true(record.pbc):
        return "missing:cell for a periodic structure"
    if record.energy is not None and not math.isfinite(float(record.energy)):
        return "nonfinite:energy"
    if record.energy_kind not in ENERGY_KINDS:
        return f"bad_value:energy_kind {record.energy_kind!r}"
    for name, shape_for in _LABEL_ARRAYS:
        value = getattr(record, name)
        if value is None:
            continue
        arr = value if type(value) is np.ndarray else np.asarray(value)
        shape = shape_for(n)
        if arr.shape != shape and not (name == "stress" and arr.shape == (3, 3)):
            return f"bad_shape:{name} {arr.shape}, expected {shape}"
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            return f"nonfinite:{name}"
    if not (math.isfinite(record.weight) and record.weight >= 0):
        return f"bad_value:weight {record.weight}"
    drop_invalid_optional(record)
    return None


def optional_label_problem(record: Record, name: str) -> str | None:
    """Why the optional label ``name`` (one of ``OPTIONAL_LABELS``) of ``record`` is invalid, or
    None if it is absent or valid. Assumes ``numbers`` is valid (its length is the atom count)."""
    value = getattr(record, name)
    if value is None:
        return None
    if name in ("charge", "spin"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            text = repr(value)
            return f"{name} {text if len(text) <= 40 else text[:37] + '...'} is not a number"
        if not math.isfinite(number):
            return f"{name} {number} is not finite"
        if name == "spin" and number != int(number):
            return f"spin multiplicity {number:g} is not an integer"
        if name == "spin" and number < 1:
            return f"spin multiplicity {number:g} < 1"
        return None
    arr = value if type(value) is np.ndarray else np.asarray(value)
    n = len(record.numbers)
    if arr.shape != (n,):
        return f"{name} shape {arr.shape}, expected ({n},)"
    if arr.dtype.kind not in "biuf":
        return f"{name} dtype {arr.dtype} is not numeric"
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return f"{name} has non-finite values"
    if name == "tags" and arr.dtype.kind == "f" and not (arr == np.round(arr)).all():
        return "tags are not integers"
    if name == "fixed" and arr.dtype.kind != "b" and not np.isin(arr, (0, 1)).all():
        return "fixed has values other than 0/1"
    return None


def drop_invalid_optional(record: Record) -> list[str]:
    """Set every invalid optional label of ``record`` to None ("unknown"); return their names.

    Why: a placeholder such as SchNetPack's ``spin_multiplicity = 0.0`` ("not set") must not cost
    the structure, its energy and its forces. Each drop is noted in
    ``record.metadata["dropped_labels"]`` (label -> reason), so the store says why the label is
    missing and ingest can count the drops. ``problem()`` calls this once the required fields
    and training labels have passed; calling it again changes nothing.
    """
    dropped: list[str] = []
    for name in OPTIONAL_LABELS:
        if getattr(record, name) is None:
            continue
        why = optional_label_problem(record, name)
        if why is not None:
            setattr(record, name, None)
            record.metadata.setdefault(DROPPED_LABELS_KEY, {})[name] = why
            dropped.append(name)
    return dropped


def close_contact(record: Record, floor: float = MIN_INTERATOMIC_DISTANCE) -> str | None:
    """``"bad_value:atoms i and j are d Å apart (< 0.1 Å)"`` for the closest pair of atoms nearer
    than ``floor`` (minimum image for periodic cells, an atom's own images included), else None.

    Run by ingest on every record that passed ``problem()`` (see ``MIN_INTERATOMIC_DISTANCE``);
    n log n in the number of atoms (``omni_data.contacts``)."""
    from omni_data.contacts import closest_pair

    try:
        return _contact_reason(closest_pair(record.positions, record.cell, record.pbc, floor), floor)
    except (ValueError, ArithmeticError) as exc:  # a cell no real structure has (e.g. 1e-300 Å thin)
        return f"bad_value:{exc}"


def close_contacts(records: list[Record], floor: float = MIN_INTERATOMIC_DISTANCE) -> list[str | None]:
    """``close_contact`` of each record, small structures batched by atom count (about a
    microsecond each instead of tens; ``contacts.closest_pairs``)."""
    from omni_data.contacts import closest_pairs

    try:
        found = closest_pairs([(r.positions, r.cell, r.pbc) for r in records], floor)
    except (ValueError, ArithmeticError):  # a degenerate cell somewhere: each record says its own reason
        return [close_contact(r, floor) for r in records]
    return [None if pair is None else _contact_reason(pair, floor) for pair in found]


def _contact_reason(found: tuple[float, int, int] | None, floor: float) -> str | None:
    if found is None:
        return None
    d, i, j = found
    if i == j:
        return f"bad_value:atom {i} and its own periodic image are {d:.3f} Å apart (< {floor:g} Å)"
    return f"bad_value:atoms {i} and {j} are {d:.3f} Å apart (< {floor:g} Å)"
