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

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "FieldSpec",
    "PackedMetadata",
    "PackedJsonMetadata",
    "Record",
    "shape_of",
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


def shape_of(shape: tuple[int | str, ...]) -> Any:
    """``n -> concrete shape`` for a ``FieldSpec.shape`` (``"n"`` = number of atoms)."""
    if "n" not in shape:
        return lambda n: shape
    if shape == ("n",):
        return lambda n: (n,)
    if shape == ("n", 3):
        return lambda n: (n, 3)
    return lambda n: tuple(n if s == "n" else s for s in shape)


_OPTIONAL = ("forces", "stress", "magmoms", "fixed", "tags")
_OPTIONAL_ARRAYS = tuple((name, np.dtype(FIELDS[name].dtype), shape_of(FIELDS[name].shape)) for name in _OPTIONAL)


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
