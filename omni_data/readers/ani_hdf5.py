"""ANI-family HDF5: ANI-1x release, ANI-2x/torchani, and Transition1x layouts (detected per group).

* ANI-1x release (``ani1x-release.h5``, Smith et al. 2020): one group per formula with
  ``atomic_numbers`` (n,), ``coordinates`` (M,n,3) Å, and ``<level>.energy`` (M,) hartree /
  ``<level>.forces`` (M,n,3) hartree/Å for levels such as ``wb97x_dz``, ``wb97x_tz``,
  ``ccsd(t)_cbs`` (energy only; NaN where not computed). Level: ``opts.options["level"]``
  (default ``wb97x_dz``).
* ANI-2x / torchani (``ANI-2x-wB97X-631Gd.h5``): groups by atom count (``"002"``...) with
  ``species`` (M,n) atomic numbers, ``coordinates`` Å, ``energies`` hartree, ``forces`` hartree/Å.
* Transition1x (Schreiner et al. 2022, gitlab.com/matschreiner/Transition1x): ``<split>/<formula>/
  <rxn>/`` with ``atomic_numbers``, ``positions`` (M,n,3) Å, ``wB97x_6-31G(d).energy`` eV and
  ``wB97x_6-31G(d).forces`` eV/Å, plus subgroups ``reactant``/``product``/``transition_state``
  (which take the parent's ``atomic_numbers``). When ``train``/``val``/``test`` splits exist only
  those are read (the ``data`` split repeats their configurations).

All three contain neutral molecules only, so ``charge`` is 0. A non-finite energy at the chosen
level is Rejected (``nonfinite:energy``), never stored as a label.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.readers import Partition, ReaderError, ReadOptions
from omni_data.readers._finish import finish, reject
from omni_data.readers._hdf5 import H5_ERRORS, Slice, hdf5_partitions, open_h5, slices
from omni_data.schema import Record, Rejected
from omni_data.units import HARTREE_EV

__all__ = ["partitions", "read"]

MARKERS = ("coordinates", "positions")
T1X_LEVEL = "wB97x_6-31G(d)"
T1X_SPLITS = ("train", "val", "test")


def _roots(h5: Any, path: str | Path) -> tuple[str, ...]:
    """The Transition1x split groups present, else the file root; ReaderError if the root is damaged."""
    try:
        present = tuple(s for s in T1X_SPLITS if s in h5)
    except H5_ERRORS as exc:
        raise ReaderError(f"{path}: damaged HDF5 group index ({type(exc).__name__}: {exc})") from exc
    return present if present else ("",)


def partitions(path: Path, target: int) -> list[Partition]:
    with open_h5(path) as h5:
        roots = _roots(h5, path)
    return hdf5_partitions(path, target, MARKERS, roots)


def _layout(g: Any) -> str:
    if "species" in g:
        return "torchani"
    if "positions" in g:
        return "transition1x"
    return "ani1x"


def _labels(h5: Any, sl: Slice, opts: ReadOptions) -> dict[str, Any]:
    """numbers (M,n), positions, energy (M,) eV or None, forces eV/Å or None, and metadata."""
    g = h5[sl.path]
    layout = _layout(g)
    a, b = sl.lo, sl.hi
    meta: dict[str, Any] = {"layout": layout, "group": sl.path}
    if layout == "torchani":
        numbers = np.asarray(g["species"][a:b], dtype=np.int64)
        pos = g["coordinates"][a:b]
        e_name, f_name, factor = (
            opts.options.get("energy", "energies"),
            opts.options.get("forces", "forces"),
            HARTREE_EV,
        )
    elif layout == "ani1x":
        level = opts.options.get("level", "wb97x_dz")
        numbers = np.broadcast_to(
            np.asarray(g["atomic_numbers"][()], dtype=np.int64), (b - a, g["atomic_numbers"].shape[0])
        )
        pos = g["coordinates"][a:b]
        e_name, f_name, factor = f"{level}.energy", f"{level}.forces", HARTREE_EV
        meta["level"] = level
    else:
        parts = sl.path.split("/")
        z_group = g if "atomic_numbers" in g else h5[sl.path.rsplit("/", 1)[0]]
        numbers = np.broadcast_to(
            np.asarray(z_group["atomic_numbers"][()], dtype=np.int64), (b - a, z_group["atomic_numbers"].shape[0])
        )
        pos = g["positions"][a:b]
        level = opts.options.get("level", T1X_LEVEL)
        e_name, f_name, factor = f"{level}.energy", f"{level}.forces", 1.0
        kind = parts[-1] if parts[-1] in ("reactant", "product", "transition_state") else "path"
        rxn_parts = parts[:-1] if kind != "path" else parts
        meta.update({"formula": rxn_parts[-2], "rxn": rxn_parts[-1], "kind": kind, "level": level})
    if e_name not in g:
        raise KeyError(f"dataset {e_name!r} missing in group {sl.path!r}")
    energy = np.asarray(g[e_name][a:b], dtype=np.float64) * factor
    forces = np.asarray(g[f_name][a:b], dtype=np.float64) * factor if f_name in g else None
    return {
        "numbers": numbers,
        "positions": np.asarray(pos, dtype=np.float64),
        "energy": energy,
        "forces": forces,
        "meta": meta,
    }


def read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]:
    with open_h5(part.path) as h5:
        for sl in slices(h5, part, MARKERS, _roots(h5, part.path)):
            ids = [f"{sl.path}/{k}" for k in range(sl.lo, sl.hi)]
            try:
                lab = _labels(h5, sl, opts)
            except H5_ERRORS as exc:  # a missing or damaged dataset fails this group's conformers only
                kind = "missing" if isinstance(exc, KeyError) else "parse"
                for j, sid in enumerate(ids):
                    yield reject(opts, part.path, sl.first + j, f"{kind}:{exc}", sid)
                continue
            for j, sid in enumerate(ids):
                try:
                    rec = _record(lab, j, sid, sl, part, opts)
                except (IndexError, ValueError, TypeError) as exc:  # datasets of unequal lengths
                    yield reject(opts, part.path, sl.first + j, f"bad_shape:{exc} in group {sl.path}", sid)
                    continue
                yield finish(rec, opts, convert=False)


def _record(lab: dict[str, Any], j: int, sid: str, sl: Slice, part: Partition, opts: ReadOptions) -> Record:
    """Conformer ``j`` of slice ``sl`` as a Record (IndexError when the group's datasets disagree)."""
    return Record(
        numbers=lab["numbers"][j],
        positions=lab["positions"][j],
        id=opts.make_id(sid),
        dataset=opts.dataset,
        task=opts.task,
        energy=float(lab["energy"][j]),
        energy_kind=opts.energy_kind,
        forces=None if lab["forces"] is None else lab["forces"][j],
        charge=0.0,
        source_file=part.path,
        source_index=sl.first + j,
        metadata={**lab["meta"], "conformer": sl.lo + j},
    )
