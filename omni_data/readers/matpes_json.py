"""MatPES (matpes.ai; ``matpes`` package): a gzipped JSON list of dicts, or JSON lines (2025.2).

Per record: ``matpes_id``, ``structure`` (pymatgen Structure dict), ``energy`` (eV, total),
``forces`` (eV/Å), ``stress`` (6 Voigt values xx,yy,zz,yz,xz,xy in kBar, VASP sign: compression
positive), ``magmoms`` (μB or null), ``formation_energy_per_atom``, ``cohesive_energy_per_atom``,
``bandgap``, ``functional``, ``formula_pretty`` and ``provenance`` {``original_mp_id``,
``md_step``, ...}. ``partitions`` indexes the (decompressed) byte offset of every record once with
``_json_scan.scan_values``; ``read`` decompresses up to its range and decodes only its records, so
memory is bounded by a partition. Group key: ``metadata["mp_id"]`` (the original MP parent).
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.readers import Partition, ReaderError, ReadOptions
from omni_data.readers._common import open_binary
from omni_data.readers._finish import finish, reject
from omni_data.readers._json_scan import decode_value, read_range, scan_values, split_values
from omni_data.readers._pmg import structure_arrays
from omni_data.schema import Record, Rejected
from omni_data.units import vasp_kbar_to_ase

__all__ = ["partitions", "entry_record", "read"]

META_KEYS = (
    "formation_energy_per_atom",
    "cohesive_energy_per_atom",
    "bandgap",
    "functional",
    "formula_pretty",
    "nsites",
)


def partitions(path: Path, target: int) -> list[Partition]:
    """Runs of ``target`` records; ``extra`` holds their uncompressed byte range."""
    target = max(1, int(target))
    try:
        with open_binary(path) as fh:
            index = scan_values(fh, str(path))
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ReaderError(f"{path}: cannot read ({exc})") from exc
    except ValueError as exc:
        raise ReaderError(str(exc)) from exc
    offsets = index.offsets
    parts = []
    for s in range(0, len(offsets), target):
        stop = min(s + target, len(offsets))
        end = offsets[stop] if stop < len(offsets) else index.end
        parts.append(Partition(str(path), s, stop, (("offset", offsets[s]), ("end", end))))
    return parts


def entry_record(entry: dict[str, Any], opts: ReadOptions, path: str, index: int) -> Record:
    """One MatPES entry as a Record in Omni units (stress kBar, VASP sign -> eV/Å³, ASE sign)."""
    numbers, positions, cell, pbc = structure_arrays(entry["structure"])
    energy = entry.get(opts.key("energy"))
    forces = entry.get(opts.key("forces"))
    stress = entry.get(opts.key("stress"))
    magmoms = entry.get(opts.key("magmoms"))
    source_id = entry.get(opts.key("id", "matpes_id"))
    if source_id is None:
        raise KeyError("matpes_id")
    provenance = entry.get("provenance") or {}
    meta: dict[str, Any] = {"matpes_id": str(source_id)}
    if provenance.get("original_mp_id") is not None:
        meta["mp_id"] = str(provenance["original_mp_id"])
    if provenance.get("md_step") is not None:
        meta["md_step"] = int(provenance["md_step"])
    group = opts.key_map.get("group")
    if group and group not in meta:  # the manifest's group key, looked up (dotted) in the entry
        value: Any = entry
        for part in group.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (str, int)):
            meta[group] = value
    for key in META_KEYS:
        value = entry.get(key)
        if isinstance(value, str) or (isinstance(value, (int, float)) and np.isfinite(value)):
            meta[key] = value
    return Record(
        numbers=numbers,
        positions=positions,
        id=opts.make_id(source_id),
        dataset=opts.dataset,
        task=opts.task,
        cell=cell,
        pbc=pbc,
        energy=None if energy is None else float(energy),
        energy_kind=opts.energy_kind,
        forces=None if forces is None else np.asarray(forces, dtype=np.float64),
        stress=None if stress is None else vasp_kbar_to_ase(np.asarray(stress, dtype=np.float64).reshape(6)),
        magmoms=None if magmoms is None else np.asarray(magmoms, dtype=np.float64),
        source_file=path,
        source_index=index,
        metadata=meta,
    )


ENTRY_ERRORS = (KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError)
"""What a malformed entry raises while it becomes a Record: it is quarantined, the rest go on."""


def read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]:
    """Entries ``part.start``..``part.stop``, each decoded alone: a damaged one is ``Rejected``."""
    offset, end = int(part.get("offset")), int(part.get("end"))
    raw = read_range(part.path, offset, end)
    where = f"{part.path} bytes {offset}-{end}"
    n = int(part.stop) - part.start
    try:
        chunks = split_values(raw, where)
    except ValueError as exc:  # brackets unbalanced: no entry of the range can be located
        for index in range(part.start, part.start + n):
            yield reject(opts, part.path, index, f"parse:{exc}")
        return
    if len(chunks) != n:
        raise ReaderError(f"{where}: {len(chunks)} entries where partitioning found {n} (file changed?)")
    for k, chunk in enumerate(chunks):
        index = part.start + k
        entry: Any = None
        try:
            entry = decode_value(chunk)
            if not isinstance(entry, dict):
                raise ValueError(f"entry is {type(entry).__name__}, not an object")
            record = entry_record(entry, opts, part.path, index)
        except ENTRY_ERRORS as exc:
            sid = str(entry.get(opts.key("id", "matpes_id"), "")) if isinstance(entry, dict) else ""
            yield reject(opts, part.path, index, f"parse:{type(exc).__name__}: {exc}", sid)
            continue
        yield finish(record, opts, convert=False)
