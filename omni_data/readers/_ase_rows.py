"""Turn one ASE-database row (sqlite ``ase.db`` or fairchem ``.aselmdb``) into a ``Record``.

Both backends store the same row dictionary (``numbers``, ``positions``, ``cell``, ``pbc``,
``constraints``, calculator results ``energy``/``free_energy``/``forces``/``stress``/``magmoms``,
``key_value_pairs`` and ``data``), so one function reads both. Labels are looked up in that order:
calculator results, ``key_value_pairs``, ``data``; ``opts.key_map`` names a different key, and
``metadata["<label>_source_key"]`` says where each label came from. Databases that declare units
(SchNetPack's ``_property_unit_dict`` metadata, e.g. ``energy_U0: Ha``) are converted from those.

SchNetPack's layout is read by default: its ``ASEAtomsData`` writes each property into
``row.data`` and declares it with its unit in the ``_property_unit_dict`` metadata
(schnetpack ``src/schnetpack/data/atoms.py``, ``create``/``_add_system``); the conventional names
``energy``, ``forces`` and ``stress`` (``MD17.energy = "energy"``, ``MD17.forces = "forces"`` in
``datasets/md17.py``) are taken as the labels when declared there (``SCHNETPACK_LABELS``).
Other declared properties (QM9's ``energy_U0``, ``free_energy`` = G) are never guessed.
A 3x3 stress is stored as its symmetric part, the asymmetry noted (``schema.symmetric_voigt``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from omni_data import units
from omni_data.readers import ReadOptions
from omni_data.readers._common import scalar_metadata
from omni_data.schema import STRESS_ASYMMETRY_KEY, Record, symmetric_voigt

# unit spellings found in ASE / SchNetPack database metadata -> Omni unit table names
_ENERGY_ALIASES = {
    "ev": "eV",
    "mev": "meV",
    "ha": "Ha",
    "hartree": "Ha",
    "ry": "Ry",
    "kcal/mol": "kcal/mol",
    "kj/mol": "kJ/mol",
}
_LENGTH_ALIASES = {"ang": "Å", "angstrom": "Å", "a": "Å", "å": "Å", "bohr": "bohr", "a0": "bohr", "nm": "nm"}
_CALC_KEYS = ("energy", "free_energy", "forces", "stress", "magmoms")
SCHNETPACK_LABELS = {"energy": "energy", "forces": "forces", "stress": "stress"}
"""Label -> the property name SchNetPack databases conventionally give it (read from ``row.data``
when the database's ``_property_unit_dict`` declares it)."""


def energy_unit_name(text: str) -> str:
    """Omni's name for an energy unit spelled ``text`` (``Ha``, ``eV``, ``kcal/mol``...)."""
    name = _ENERGY_ALIASES.get(text.strip().lower())
    if name is None:
        raise ValueError(f"unknown energy unit {text!r} in database metadata")
    return name


def length_unit_name(text: str) -> str:
    name = _LENGTH_ALIASES.get(text.strip().lower())
    if name is None:
        raise ValueError(f"unknown length unit {text!r} in database metadata")
    return name


def _declared_scale(unit: str | None, kind: str, opts: ReadOptions) -> float:
    """Factor taking a value in the database-declared ``unit`` to the manifest's declared unit, so
    that ``opts.convert`` (which scales from the manifest unit to eV) gives eV in the end."""
    if not unit:
        return 1.0
    if kind == "energy":
        return units.energy_factor(energy_unit_name(unit)) / units.energy_factor(opts.energy_unit)
    if kind == "stress":
        return _stress_scale(unit) / units.stress_factor(opts.stress_unit)
    e_part, _, l_part = unit.rpartition("/")
    f_db = units.energy_factor(energy_unit_name(e_part)) / units.length_factor(length_unit_name(l_part))
    return f_db / (units.energy_factor(opts.energy_unit) / units.length_factor(opts.length_unit))


def _stress_scale(unit: str) -> float:
    """eV/Å³ per one ``unit`` as SchNetPack spells it (``eV/Ang/Ang/Ang``, ``eV/Ang^3``, ``GPa``)."""
    text = unit.strip().replace("**", "^")
    if text in units.STRESS_UNITS:
        return units.stress_factor(text)
    energy, *lengths = text.split("/")
    if len(lengths) == 1 and lengths[0].endswith(("^3", "3")):
        lengths = [lengths[0].rstrip("3").rstrip("^")] * 3
    if len(lengths) != 3:
        raise ValueError(f"unknown stress unit {unit!r} in database metadata")
    volume = float(np.prod([units.length_factor(length_unit_name(x)) for x in lengths]))
    return units.energy_factor(energy_unit_name(energy)) / volume


def _lookup(
    row: Mapping[str, Any], kvp: Mapping[str, Any], data: Mapping[str, Any], key: str, calc_only: bool = False
) -> tuple[Any, str] | None:
    if row.get(key) is not None and key in _CALC_KEYS:
        return row[key], key
    if calc_only:
        return None
    if key in kvp:
        return kvp[key], f"key_value_pairs.{key}"
    if key in data:
        return data[key], f"data.{key}"
    return None


def _label(
    canonical: str,
    default_keys: tuple[str, ...],
    row: Mapping[str, Any],
    kvp: Mapping[str, Any],
    data: Mapping[str, Any],
    opts: ReadOptions,
    unit_dict: Mapping[str, Any] | None = None,
) -> tuple[Any, str, str] | None:
    """(value, where, key) for one label: the key map's key if declared (searched in calculator results,
    key_value_pairs, data), else the defaults in order. Default keys of calculator labels are only taken
    from calculator results: a ``data.free_energy`` (e.g. QM9's thermodynamic G in Ha) is never guessed,
    except SchNetPack's conventional name for the label (``SCHNETPACK_LABELS``) when the database's
    ``_property_unit_dict`` (``unit_dict``) declares it."""
    explicit = canonical in opts.key_map
    keys = (opts.key_map[canonical],) if explicit else default_keys
    calc_only = not explicit and canonical in _CALC_KEYS
    for key in keys:
        found = _lookup(row, kvp, data, key, calc_only)
        if found is not None:
            return found[0], found[1], key
    layout_key = SCHNETPACK_LABELS.get(canonical)
    if not explicit and unit_dict and layout_key in unit_dict and data.get(layout_key) is not None:
        return data[layout_key], f"data.{layout_key}", layout_key
    return None


def fixed_from_constraints(constraints: Any, n: int) -> tuple[np.ndarray | None, list[str]]:
    """Per-atom fixed mask from ASE constraint dicts (FixAtoms; FixCartesian fixing all 3 axes).

    Returns ``(None, [])`` when there are no constraints (unknown, not 'nothing fixed'), and the
    names of constraint types that do not fix whole atoms (kept in metadata, never dropped silently)."""
    if isinstance(constraints, str):
        constraints = json.loads(constraints) if constraints.strip() else []
    if not constraints:
        return None, []
    fixed = np.zeros(n, dtype=bool)
    other: list[str] = []
    for c in constraints:
        name, kw = c.get("name"), c.get("kwargs", {})
        if name == "FixAtoms":
            idx = np.asarray(kw.get("indices", []))
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
            fixed[idx.astype(np.int64)] = True
        elif name == "FixCartesian" and np.asarray(kw.get("mask", [])).all():
            fixed[np.atleast_1d(np.asarray(kw.get("a"), dtype=np.int64))] = True
        else:
            other.append(str(name))
    return fixed, other


def _scalar(value: Any) -> Any:
    """A one-element array (SchNetPack stores scalars as shape-(1,) arrays) as a Python scalar."""
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.reshape(-1)[0].item()
    if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], (list, dict)):
        return value[0]
    return value


def _optional_array(value: Any) -> Any:
    """``value`` as a float array, or as found when it is not numeric (the schema then drops it)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return value


def _calc_labels(
    row: Mapping[str, Any],
    kvp: Mapping[str, Any],
    data: Mapping[str, Any],
    opts: ReadOptions,
    unit_dict: Mapping[str, str],
    n: int,
    meta: dict[str, Any],
) -> tuple[Any, str, Any, Any, Any]:
    """(energy, energy_kind, forces, stress, magmoms) of one row; sources recorded in ``meta``."""
    kind = opts.energy_kind
    energy = None
    defaults = ("free_energy", "energy") if opts.energy_key == "free_energy" else ("energy", "free_energy")
    found = _label("energy", defaults, row, kvp, data, opts, unit_dict)
    if found is not None:
        value, where, key = found
        energy = float(_scalar(value)) * _declared_scale(unit_dict.get(key), "energy", opts)
        meta["energy_source_key"] = where
        if key == "free_energy" and "energy" not in opts.key_map:
            kind = "free"
    forces = stress = magmoms = None
    found = _label("forces", ("forces",), row, kvp, data, opts, unit_dict)
    if found is not None:
        forces = np.asarray(found[0], dtype=np.float64) * _declared_scale(unit_dict.get(found[2]), "forces", opts)
        meta["forces_source_key"] = found[1]
    found = _label("stress", ("stress",), row, kvp, data, opts, unit_dict)
    if found is not None:
        scale = _declared_scale(unit_dict.get(found[2]), "stress", opts)
        stress, asym = symmetric_voigt(
            np.asarray(found[0], dtype=np.float64) * scale, units.stress_factor(opts.stress_unit)
        )
        if asym > 0:
            meta[STRESS_ASYMMETRY_KEY] = asym
        meta["stress_source_key"] = found[1]
    found = _label("magmoms", ("magmoms",), row, kvp, data, opts)
    if found is not None and np.size(found[0]) > 0:  # empty: none stored (not an invalid value)
        magmoms = _optional_array(found[0])  # as found: record_checks.drop_invalid_optional drops a bad one
        meta["magmoms_source_key"] = found[1]
    return energy, kind, forces, stress, magmoms


def _canon(key: str, opts: ReadOptions) -> str:
    """The label a source key was read as (the key map's, else SchNetPack's convention)."""
    for canonical in ("energy", "forces", "stress"):
        if opts.key_map.get(canonical, SCHNETPACK_LABELS[canonical]) == key:
            return canonical
    return key


def record_from_row(
    row: Mapping[str, Any],
    kvp: Mapping[str, Any],
    data: Mapping[str, Any],
    *,
    source_id: str,
    path: str,
    index: int,
    opts: ReadOptions,
    unit_dict: Mapping[str, str] | None = None,
    distance_unit: str | None = None,
) -> Record:
    """One database row as a Record in Omni units (call ``problem()``, then ``normalized()``);
    ValueError on values that do not fit."""
    unit_dict = unit_dict or {}
    numbers = np.asarray(row["numbers"], dtype=np.int64)
    n = len(numbers)
    positions = np.asarray(row["positions"], dtype=np.float64).reshape(n, 3)
    pbc = np.asarray(row.get("pbc", [False] * 3), dtype=bool).reshape(3)
    cell = (
        np.asarray(row["cell"], dtype=np.float64).reshape(3, 3) if row.get("cell") is not None and pbc.any() else None
    )
    meta: dict[str, Any] = {}
    if distance_unit and length_unit_name(distance_unit) != "Å":
        scale = units.length_factor(length_unit_name(distance_unit)) / units.length_factor(opts.length_unit)
        positions = positions * scale
        cell = None if cell is None else cell * scale
    energy, kind, forces, stress, magmoms = _calc_labels(row, kvp, data, opts, unit_dict, n, meta)
    rec = Record(
        numbers=numbers,
        positions=positions,
        id=opts.make_id(source_id),
        dataset=opts.dataset,
        task=opts.task,
        cell=cell,
        pbc=pbc,
        energy=energy,
        energy_kind=kind,
        forces=forces,
        stress=stress,
        magmoms=magmoms,
        source_file=path,
        source_index=index,
        metadata=meta,
    )
    # charge and spin are kept as found (a float spin stays a float): record_checks.drop_invalid_optional
    # drops a placeholder (SchNetPack's spin_multiplicity 0.0, "not set"), NaN or text to None
    found = _label("charge", ("charge", "total_charge"), row, kvp, data, opts)
    if found is not None:
        rec.charge = _scalar(found[0])
        meta["charge_source_key"] = found[1]
    elif row.get("initial_charges") is not None:
        rec.charge = float(np.sum(row["initial_charges"]))
        meta["charge_source_key"] = "sum(initial_charges)"
    found = _label("spin", ("spin", "multiplicity", "spin_multiplicity"), row, kvp, data, opts)
    if found is not None:
        rec.spin = _scalar(found[0])
        meta["spin_source_key"] = found[1]
    rec.fixed, other = fixed_from_constraints(row.get("constraints"), n)
    if other:
        meta["other_constraints"] = other
    if row.get("tags") is not None:
        rec.tags = np.asarray(row["tags"], dtype=np.int64)
    if row.get("unique_id"):
        meta["unique_id"] = str(row["unique_id"])
    group = opts.key_map.get("group")
    if group is not None:  # the manifest's group key (OMat24 sid, OMol25 source): top level, where splits look
        found = _lookup(row, kvp, data, group)
        value = None if found is None else _scalar(found[0])
        if isinstance(value, (str, int)):
            meta[group] = value
    used = set(opts.key_map.values()) | {
        key for c, key in SCHNETPACK_LABELS.items() if meta.get(f"{c}_source_key") == f"data.{key}"
    }
    kv_meta = scalar_metadata(dict(kvp), used)
    # data fields: scalars only (per-atom arrays such as OMol25's mulliken_charges stay in the source)
    data_meta = {
        k: v
        for k, v in scalar_metadata({k: _scalar(v) for k, v in data.items()}, used).items()
        if not isinstance(v, list)
    }
    if kv_meta:
        meta["key_value_pairs"] = kv_meta
    if data_meta:
        meta["data"] = data_meta
    read_from = {opts.key_map.get(c, SCHNETPACK_LABELS[c]) for c in ("energy", "forces", "stress")}
    declared = {k: v for k, v in unit_dict.items() if k in read_from and meta.get(f"{_canon(k, opts)}_source_key")}
    if declared:
        meta["declared_units"] = declared
    return opts.convert(rec)  # not yet normalized: callers run record_checks.problem() first
