"""MPtrj (CHGNet's ``MPtrj_2022.9_full.json``): one JSON object ``mp_id -> frame_id -> frame``.

Frame keys (CHGNet ``StructureJsonData`` / MPtrj docs): ``structure`` (pymatgen Structure dict),
``uncorrected_total_energy`` and ``corrected_total_energy`` (eV, MP2020 correction in the latter),
``energy_per_atom``, ``ef_per_atom``, ``e_per_atom_relaxed``, ``ef_per_atom_relaxed``, ``force``
(eV/Å), ``stress`` (3x3 kBar, VASP sign: compression positive), ``magmom`` (μB or null),
``bandgap``, ``mp_id``. The real file is 12 GB: ``partitions`` indexes the byte offset of every
mp-id with ``_json_scan.scan_object`` (no parse), partitions hold whole mp-ids, and ``read``
seeks to its byte range and decodes one mp-id at a time.

Energy: ``opts.key_map["energy"]`` or ``opts.energy_key`` (the ReadOptions default ``"energy"``
means ``uncorrected_total_energy``, the raw DFT total the ``mpa`` task trains on); the
``corrected_total_energy`` gets ``energy_kind="corrected"``. Group key: ``metadata["mp_id"]``.
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
from omni_data.readers._json_scan import decode_entry, key_of, read_range, scan_object, split_entries
from omni_data.readers._pmg import structure_arrays
from omni_data.schema import STRESS_ASYMMETRY_KEY, Record, Rejected, symmetric_voigt
from omni_data.units import vasp_kbar_to_ase

__all__ = ["partitions", "frame_record", "read"]

DEFAULT_ENERGY = "uncorrected_total_energy"
META_KEYS = (
    "uncorrected_total_energy",
    "corrected_total_energy",
    "energy_per_atom",
    "ef_per_atom",
    "e_per_atom_relaxed",
    "ef_per_atom_relaxed",
    "bandgap",
)


def partitions(path: Path, target: int) -> list[Partition]:
    """Runs of whole mp-ids holding about ``target`` frames; ``start``/``stop`` are frame indices
    and ``extra`` the byte range ``offset:end`` of the run in the file."""
    target = max(1, int(target))
    try:
        with open_binary(path) as fh:
            index = scan_object(fh, str(path))
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ReaderError(f"{path}: cannot open ({exc})") from exc
    except ValueError as exc:
        raise ReaderError(str(exc)) from exc
    bounds = index.offsets[1:] + [index.end]
    parts: list[Partition] = []
    frame, i = 0, 0
    while i < len(index.offsets):
        j, size = i, 0
        while j < len(index.offsets) and (size == 0 or size + index.children[j] <= target):
            size += index.children[j]
            j += 1
        parts.append(
            Partition(
                str(path),
                frame,
                frame + size,
                (("offset", index.offsets[i]), ("end", bounds[j - 1]), ("mp_ids", j - i)),
            )
        )
        frame, i = frame + size, j
    return parts


def _energy_key(opts: ReadOptions) -> str:
    if "energy" in opts.key_map:
        return opts.key_map["energy"]
    return DEFAULT_ENERGY if opts.energy_key == "energy" else opts.energy_key


def frame_record(frame: dict[str, Any], mp_id: str, frame_id: str, opts: ReadOptions, path: str, index: int) -> Record:
    """One MPtrj frame as a Record in Omni units (stress kBar -> eV/Å³, ASE sign)."""
    numbers, positions, cell, pbc = structure_arrays(frame["structure"])
    e_key = _energy_key(opts)
    energy = frame.get(e_key)
    forces = frame.get(opts.key("forces", "force"))
    stress = frame.get(opts.key("stress", "stress"))
    magmoms = frame.get(opts.key("magmoms", "magmom"))
    meta: dict[str, Any] = {"mp_id": str(frame.get("mp_id", mp_id)), "frame_id": frame_id}
    for key in META_KEYS:
        value = frame.get(key)
        if isinstance(value, (int, float)) and np.isfinite(value):
            meta[key] = float(value)
    return Record(
        numbers=numbers,
        positions=positions,
        id=opts.make_id(f"{mp_id}/{frame_id}"),
        dataset=opts.dataset,
        task=opts.task,
        cell=cell,
        pbc=pbc,
        energy=None if energy is None else float(energy),
        energy_kind="corrected" if e_key == "corrected_total_energy" else opts.energy_kind,
        forces=None if forces is None else np.asarray(forces, dtype=np.float64),
        stress=_stress(stress, meta),
        magmoms=None if magmoms is None else np.asarray(magmoms, dtype=np.float64),
        source_file=path,
        source_index=index,
        metadata=meta,
    )


def _stress(stress: Any, meta: dict[str, Any]) -> np.ndarray | None:
    """VASP's 3x3 kBar stress as ASE-sign Voigt eV/Å³ of its symmetric part; the asymmetry, if any,
    goes to metadata for the ingest's sanity check (it was the upper triangle, silently, before)."""
    if stress is None:
        return None
    voigt, asym = symmetric_voigt(vasp_kbar_to_ase(np.asarray(stress, dtype=np.float64).reshape(3, 3)))
    if asym > 0:
        meta[STRESS_ASYMMETRY_KEY] = asym
    return voigt


ENTRY_ERRORS = (KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError)
"""What a malformed frame raises while it becomes a Record: it is quarantined, the rest go on."""


def read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]:
    """Frames of the partition's mp-ids, each mp-id decoded alone: a damaged one is ``Rejected``
    (one entry per frame the scan counted in it), the others are read."""
    offset, end = int(part.get("offset")), int(part.get("end"))
    raw = read_range(part.path, offset, end)
    where = f"{part.path} bytes {offset}-{end}"
    try:
        entries = split_entries(raw, where)
    except ValueError as exc:  # brackets unbalanced: no mp-id of the range can be located
        for index in range(part.start, int(part.stop)):
            yield reject(opts, part.path, index, f"parse:{exc}")
        return
    index = part.start
    for chunk, n_frames in entries:
        try:
            mp_id, frames = decode_entry(chunk)
        except ValueError as exc:
            mp_id = key_of(chunk)
            for _ in range(max(1, n_frames)):
                yield reject(opts, part.path, index, f"parse:bad JSON in mp-id {mp_id!r} ({exc})", mp_id)
                index += 1
            continue
        if not isinstance(frames, dict):
            yield reject(opts, part.path, index, f"parse:mp-id {mp_id} is not an object of frames", mp_id)
            index += 1
            continue
        for frame_id, frame in frames.items():
            try:
                if not isinstance(frame, dict):
                    raise ValueError("frame is not an object")
                record = frame_record(frame, mp_id, frame_id, opts, part.path, index)
            except ENTRY_ERRORS as exc:
                yield reject(opts, part.path, index, f"parse:{type(exc).__name__}: {exc}", f"{mp_id}/{frame_id}")
            else:
                yield finish(record, opts, convert=False)
            index += 1
