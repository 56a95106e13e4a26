"""SPICE HDF5 (Eastman et al. 2023; github.com/openmm/spice-dataset): one group per molecule.

Per group: ``atomic_numbers`` (n,), ``conformations`` (M,n,3) bohr, ``dft_total_energy`` (M,)
hartree, ``dft_total_gradient`` (M,n,3) hartree/bohr -- a *gradient*, so forces = -gradient --,
``formation_energy`` (M,) hartree, ``smiles`` and ``subset`` (1-element bytes). ``units``
attributes on the datasets, when present, override those defaults. The total charge is the sum of
formal charges in the (mapped) SMILES; no RDKit needed. Records are molecules (no cell).

Options (``opts.options``, else ``opts.key_map`` ``energy``/``forces``): ``energy`` (dataset name,
default ``dft_total_energy``), ``gradient`` (default ``dft_total_gradient``; always negated),
``subsets`` (list of subset names to keep; others are Rejected
``filter:subset``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from omni_data import units
from omni_data.readers import Partition, ReadOptions
from omni_data.readers._finish import finish, reject
from omni_data.readers._hdf5 import H5_ERRORS, hdf5_partitions, open_h5, slices, text
from omni_data.schema import Record, Rejected

__all__ = ["smiles_charge", "partitions", "read"]

MARKERS = ("conformations",)
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_CHARGE = re.compile(r"(\++|-+)(\d*)$")


def smiles_charge(smiles: str) -> int:
    """Total formal charge of a SMILES: the sum of the charges written in its bracket atoms.

    Bracket atom grammar (OpenSMILES): ``[isotope? symbol chiral? hcount? charge? class?]`` with
    charge ``+``, ``++``, ``+2``, ``-``, ``--``, ``-3``; atoms outside brackets are neutral.
    """
    total = 0
    for inner in _BRACKET.findall(smiles):
        inner = re.sub(r":\d+$", "", inner)  # atom-map class
        m = _CHARGE.search(inner)
        if not m:
            continue
        signs, digits = m.group(1), m.group(2)
        sign = 1 if signs[0] == "+" else -1
        if digits:
            if len(signs) != 1:
                raise ValueError(f"bad charge {m.group(0)!r} in SMILES {smiles!r}")
            total += sign * int(digits)
        else:
            total += sign * len(signs)
    return total


def _unit(dataset: Any, default: str) -> str:
    raw = dataset.attrs.get("units", default)
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _energy_factor(unit: str) -> float:
    return units.energy_factor(
        {"hartree": "hartree", "kilojoule_per_mole": "kJ/mol", "kilocalorie_per_mole": "kcal/mol"}.get(unit, unit)
    )


def _force_factor(unit: str) -> float:
    """Multiplier from ``<energy>/<length>`` (e.g. ``hartree/bohr``) to eV/Å."""
    energy, _, length = unit.partition("/")
    length = {"angstrom": "Å", "nanometer": "nm"}.get(length, length)
    return _energy_factor(energy) / units.length_factor(length)


def partitions(path: Path, target: int) -> list[Partition]:
    return hdf5_partitions(path, target, MARKERS)


def read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]:
    energy_name = opts.options.get("energy") or opts.key_map.get("energy", "dft_total_energy")
    grad_name = opts.options.get("gradient") or opts.key_map.get("forces", "dft_total_gradient")
    keep = opts.options.get("subsets")
    with open_h5(part.path) as h5:
        for sl in slices(h5, part, MARKERS):
            ids = [f"{sl.path}/{k}" for k in range(sl.lo, sl.hi)]
            try:
                g = h5[sl.path]
                smiles = text(g["smiles"][()]) if "smiles" in g else ""
                subset = text(g["subset"][()]) if "subset" in g else ""
            except H5_ERRORS as exc:
                for j, sid in enumerate(ids):
                    yield reject(
                        opts, part.path, sl.first + j, f"parse:unreadable group {sl.path} ({exc})", sid, group=sl.path
                    )
                continue
            if keep is not None and subset not in keep:
                for j, sid in enumerate(ids):
                    yield reject(opts, part.path, sl.first + j, f"filter:subset {subset}", sid)
                continue
            try:
                charge = float(smiles_charge(smiles)) if smiles else None
                numbers = np.asarray(g["atomic_numbers"][()], dtype=np.int64)
                conf = g["conformations"]
                pos = np.asarray(conf[sl.lo : sl.hi], dtype=np.float64) * units.length_factor(_unit(conf, "bohr"))
                e_ds = g.get(energy_name)
                energy = (
                    None
                    if e_ds is None
                    else np.asarray(e_ds[sl.lo : sl.hi], np.float64) * _energy_factor(_unit(e_ds, "hartree"))
                )
                g_ds = g.get(grad_name)
                forces = (
                    None
                    if g_ds is None
                    else -np.asarray(g_ds[sl.lo : sl.hi], np.float64) * _force_factor(_unit(g_ds, "hartree/bohr"))
                )
                f_ds = g.get("formation_energy")
                formation = (
                    None
                    if f_ds is None
                    else np.asarray(f_ds[sl.lo : sl.hi], np.float64) * _energy_factor(_unit(f_ds, "hartree"))
                )
            except H5_ERRORS as exc:  # a missing or damaged dataset fails this group's conformers only
                for j, sid in enumerate(ids):
                    yield reject(opts, part.path, sl.first + j, f"parse:{exc}", sid, group=sl.path)
                continue
            for j, sid in enumerate(ids):
                try:
                    rec = _record(
                        numbers, pos, energy, forces, formation, charge, j, sid, sl, smiles, subset, part, opts
                    )
                except (IndexError, ValueError, TypeError) as exc:  # datasets of unequal lengths
                    yield reject(opts, part.path, sl.first + j, f"bad_shape:{exc} in group {sl.path}", sid)
                    continue
                yield finish(rec, opts, convert=False)


def _record(
    numbers: np.ndarray,
    pos: np.ndarray,
    energy: np.ndarray | None,
    forces: np.ndarray | None,
    formation: np.ndarray | None,
    charge: float | None,
    j: int,
    sid: str,
    sl: Any,
    smiles: str,
    subset: str,
    part: Partition,
    opts: ReadOptions,
) -> Record:
    """Conformer ``j`` of slice ``sl`` as a Record (IndexError when the group's datasets disagree)."""
    meta: dict[str, Any] = {"group": sl.path, "conformer": sl.lo + j, "smiles": smiles, "subset": subset}
    if formation is not None and np.isfinite(formation[j]):
        meta["formation_energy"] = float(formation[j])
    return Record(
        numbers=numbers,
        positions=pos[j],
        id=opts.make_id(sid),
        dataset=opts.dataset,
        task=opts.task,
        energy=None if energy is None else float(energy[j]),
        energy_kind=opts.energy_kind,
        forces=None if forces is None else forces[j],
        charge=charge,
        source_file=part.path,
        source_index=sl.first + j,
        metadata=meta,
    )
