"""The canonical record: every field Omni stores, with its shape, unit and dtype.

This file is the one truth about fields and units (see ``docs/schema.md``). Readers convert
into it, writers out of it. A missing label is ``None`` -- never 0.

Conventions
-----------
* positions, cell: Å; ``cell`` rows are lattice vectors; non-periodic records carry
  ``cell = None`` and ``pbc = (False, False, False)``.
* energy: eV, float64. ``energy_kind`` says *which* energy (``ENERGY_KINDS``).
* forces: eV/Å, shape (n, 3).
* stress: eV/Å³, 6 Voigt components in ASE order (xx, yy, zz, yz, xz, xy) and ASE sign:
  ``stress = (1/V) dE/dε``, so a compressed cell has *negative* stress. VASP/MPtrj report
  kBar with compression positive: ``ase = -0.1 * GPa_to_eVA3 * kbar`` (see ``units.py``).
* magmoms: μB per atom; charge: total charge in e; spin: multiplicity 2S+1.
* fixed: per-atom bool (True = constrained); tags: per-atom int (OC20: 0 bulk, 1 surface, 2 adsorbate).
* id: ``"<dataset>:<source id>"``, stable and unique within a store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "FieldSpec",
    "PackedMetadata",
    "PackedJsonMetadata",
    "Record",
    "problem",
    "optional_label_problem",
    "drop_invalid_optional",
    "close_contact",
    "close_contacts",
    "stress_to_voigt",
    "symmetric_voigt",
    "voigt_to_matrix",
    "Rejected",
]

SCHEMA_VERSION = 1

EnergyKind = Literal["total", "free", "referenced", "corrected"]
ENERGY_KINDS: tuple[str, ...] = ("total", "free", "referenced", "corrected")
"""total: internal energy extrapolated/plain DFT total (VASP ``energy``);
free: electronic free energy (VASP ``free_energy``/TOTEN);
referenced: total minus a reference (e.g. OC20 adsorption energy);
corrected: total plus compatibility corrections (MP2020)."""


@dataclass(frozen=True)
class FieldSpec:
    """What one field is: shape (``n`` = number of atoms), unit, numpy dtype, whether required."""

    name: str
    shape: tuple[int | str, ...]
    unit: str
    dtype: str
    per_atom: bool
    required: bool
    doc: str


FIELDS: dict[str, FieldSpec] = {
    f.name: f
    for f in [
        FieldSpec("numbers", ("n",), "", "int64", True, True, "atomic numbers Z"),
        FieldSpec("positions", ("n", 3), "Å", "float64", True, True, "Cartesian positions"),
        FieldSpec("cell", (3, 3), "Å", "float64", False, False, "lattice vectors as rows; None if non-periodic"),
        FieldSpec("pbc", (3,), "", "bool", False, True, "periodicity per lattice vector"),
        FieldSpec("energy", (), "eV", "float64", False, False, "energy; which one is energy_kind"),
        FieldSpec("forces", ("n", 3), "eV/Å", "float64", True, False, "forces = -dE/dx"),
        FieldSpec("stress", (6,), "eV/Å³", "float64", False, False, "Voigt xx,yy,zz,yz,xz,xy; ASE sign"),
        FieldSpec("magmoms", ("n",), "μB", "float64", True, False, "per-atom magnetic moments"),
        FieldSpec("charge", (), "e", "float64", False, False, "total charge"),
        FieldSpec("spin", (), "", "int64", False, False, "spin multiplicity 2S+1"),
        FieldSpec("fixed", ("n",), "", "bool", True, False, "True where the atom is constrained"),
        FieldSpec("tags", ("n",), "", "int64", True, False, "per-atom tags (OC20 convention)"),
    ]
}
"""Array-valued and label fields. Scalar bookkeeping fields live directly on ``Record``."""

LABELS: tuple[str, ...] = ("energy", "forces", "stress")

OPTIONAL_LABELS: tuple[str, ...] = tuple(
    name for name, spec in FIELDS.items() if not spec.required and name != "cell" and name not in LABELS
)
"""Labels a structure is still worth storing without: ``magmoms``, ``charge``, ``spin``, ``fixed``,
``tags``. An invalid value of one of these (a SchNetPack ``spin_multiplicity`` of 0.0 meaning
"not set", a NaN charge, magmoms of the wrong length) is dropped to None ("unknown") by
``drop_invalid_optional`` and noted in ``metadata["dropped_labels"]``; the record is kept.
Invalid required fields (numbers, positions, the cell of a periodic structure) and invalid
training ``LABELS`` (energy, forces, stress) quarantine the record instead. Per-frame extras
without a schema field (dipoles, partial charges) stay in ``metadata`` and are not validated."""

DROPPED_LABELS_KEY = "dropped_labels"
"""``metadata`` key: ``{label: why}`` for each optional label dropped as invalid."""

MIN_INTERATOMIC_DISTANCE = 0.1
"""Å. Two atoms closer than this (periodic images included) quarantine the structure at every
ingest, with or without a manifest ``min_distance`` filter. No real structure has nuclei closer
than about 0.5 Å (H2 is 0.74 Å; hydrogen under multi-megabar compression stays above ~0.6 Å), so
0.1 Å catches duplicated atoms, coordinates written twice and unit mistakes (fractional or nm
coordinates read as Å) without touching compressed high-pressure data."""


class PackedMetadata(bytes):
    """A record's metadata still in its stored msgpack form (a type of its own, so that it can
    never be mistaken for a value someone stored)."""

    __slots__ = ()


class PackedJsonMetadata(bytes):
    """A record's metadata still in its stored JSON form."""

    __slots__ = ()


class _Metadata:
    """``Record.metadata``: a dict, unpacked from its stored msgpack or JSON bytes on first access.

    The store's decoder (``store/codec.py``) leaves a record's metadata packed: it passes a
    ``PackedMetadata`` (msgpack bytes of the LMDB value) as ``metadata`` and this descriptor
    unpacks it when the attribute is first read
    (training never reads it; unpacking it was 60% of the decode time of a real OMol25 row). Everything else sees a plain attribute: equality, ``repr``,
    pickling, ``dataclasses.replace`` and ``Record(**vars(r))`` all work. A dataclass field
    whose default is a descriptor calls ``__set__`` from ``__init__``; the default arrives as
    the descriptor itself, meaning "no metadata".
    """

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self  # the dataclass default
        value = obj.__dict__["metadata"]
        if type(value) is PackedMetadata or type(value) is PackedJsonMetadata:
            value = obj.__dict__["metadata"] = _unpack_metadata(value, obj)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__["metadata"] = {} if value is self else value


def _unpack_metadata(raw: PackedMetadata | PackedJsonMetadata, record: Any) -> Any:
    import msgpack

    try:
        if type(raw) is PackedJsonMetadata:
            import json

            return json.loads(raw) or {}
        return msgpack.unpackb(raw) or {}
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        where = f"{record.source_file}#{record.source_index}"
        raise ValueError(f"record {record.id!r} ({where}): metadata could not be unpacked ({exc})") from None


@dataclass
class Record:
    """One structure with its labels, in Omni's units and sign conventions."""

    numbers: np.ndarray
    positions: np.ndarray
    id: str
    dataset: str
    task: str
    cell: np.ndarray | None = None
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    energy: float | None = None
    energy_kind: str = "total"
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    magmoms: np.ndarray | None = None
    charge: float | None = None
    spin: int | None = None
    fixed: np.ndarray | None = None
    tags: np.ndarray | None = None
    weight: float = 1.0
    source_file: str = ""
    source_index: int = -1
    metadata: dict[str, Any] = _Metadata()  # type: ignore[assignment]  # a dict on every instance

    @property
    def n_atoms(self) -> int:
        return int(len(self.numbers))

    def normalized(self) -> Record:
        """Return self with every array cast to its schema dtype and shape (copies only if needed).

        Arrays that already have the schema dtype and shape are kept as they are (no new view)."""
        numbers = self.numbers
        if not (type(numbers) is np.ndarray and numbers.dtype == _I8 and numbers.ndim == 1):
            numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
        self.numbers = numbers
        n = len(numbers)
        self.positions = _cast(self.positions, _F8, (n, 3))
        self.pbc = _cast(self.pbc, _BOOL, (3,))
        if self.cell is not None:
            self.cell = _cast(self.cell, _F8, (3, 3))
        if self.energy is not None:
            self.energy = float(self.energy)
        for name, dtype, shape_of in _OPTIONAL_ARRAYS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _cast(value, dtype, shape_of(n)))
        if self.charge is not None:
            self.charge = float(self.charge)
        if self.spin is not None:
            self.spin = int(self.spin)
        return self


_F8, _I8, _BOOL = np.dtype(np.float64), np.dtype(np.int64), np.dtype(bool)


def _cast(value: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """``np.asarray(value, dtype).reshape(shape)``, or ``value`` itself when it already is that."""
    if type(value) is np.ndarray and value.dtype == dtype and value.shape == shape:
        return value
    return np.asarray(value, dtype=dtype).reshape(shape)


def _shape_of(shape: tuple[int | str, ...]) -> Any:
    """``n -> concrete shape`` for a ``FieldSpec.shape`` (``"n"`` = number of atoms)."""
    if "n" not in shape:
        return lambda n: shape
    if shape == ("n",):
        return lambda n: (n,)
    if shape == ("n", 3):
        return lambda n: (n, 3)
    return lambda n: tuple(n if s == "n" else s for s in shape)


_OPTIONAL = ("forces", "stress", "magmoms", "fixed", "tags")
_OPTIONAL_ARRAYS = tuple((name, np.dtype(FIELDS[name].dtype), _shape_of(FIELDS[name].shape)) for name in _OPTIONAL)
_LABEL_ARRAYS = tuple(entry for entry in _OPTIONAL_ARRAYS if entry[0] in LABELS)


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
    for name, _dtype, shape_of in _LABEL_ARRAYS:
        value = getattr(record, name)
        if value is None:
            continue
        arr = value if type(value) is np.ndarray else np.asarray(value)
        shape = shape_of(n)
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


def stress_to_voigt(stress: np.ndarray) -> np.ndarray:
    """3x3 (or 6) stress to ASE Voigt order xx, yy, zz, yz, xz, xy."""
    s = np.asarray(stress, dtype=np.float64)
    if s.shape == (6,):
        return s
    s = s.reshape(3, 3)
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


STRESS_ASYMMETRY_KEY = "stress_asymmetry"
"""``Record.metadata`` key: ``max |σij - σji| / 2`` of the source's 3x3 stress, in eV/Å³; the
stored stress is the symmetric part. Ingest's sanity bounds quarantine it above a tolerance
(``harmonize.sanity``)."""


def symmetric_voigt(value: Any, scale: float = 1.0) -> tuple[np.ndarray, float]:
    """A stress of 6 (Voigt) or 9 (3x3) values as Voigt ``xx, yy, zz, yz, xz, xy`` of its
    symmetric part ``(σ + σᵀ)/2``, and its asymmetry ``max |σij - σji| / 2`` times ``|scale|``
    (0 for 6 values). ``scale`` takes the source's unit to eV/Å³, so the asymmetry can be
    compared with a tolerance whatever unit the source used; ValueError for another size."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 6:
        return arr.reshape(6), 0.0
    if arr.size != 9:
        raise ValueError(f"stress of shape {arr.shape}: expected 6 (Voigt) or 9 (3x3) values")
    m = arr.reshape(3, 3)
    sym = (m + m.T) / 2
    asym = float(np.abs(m - m.T).max()) / 2 * abs(float(scale))
    return np.array([sym[0, 0], sym[1, 1], sym[2, 2], sym[1, 2], sym[0, 2], sym[0, 1]]), asym


def voigt_to_matrix(voigt: np.ndarray) -> np.ndarray:
    """ASE Voigt (xx, yy, zz, yz, xz, xy) to a symmetric 3x3 matrix."""
    xx, yy, zz, yz, xz, xy = np.asarray(voigt, dtype=np.float64)
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


@dataclass
class Rejected:
    """An input record that could not become a ``Record``: it goes to the quarantine, never lost.

    ``reason`` follows ``problem()``'s form, ``"<kind>:<detail>"`` (kinds: parse, missing,
    nonfinite, bad_shape, bad_value, filter, empty, duplicate).
    """

    source_file: str
    source_index: int
    reason: str
    dataset: str = ""
    source_id: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
