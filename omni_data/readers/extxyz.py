"""Extended XYZ reader: a streaming parser (header regex + bulk numpy atom block), .gz/.xz aware.

Why not ``ase.io.read``: it builds an ``Atoms`` and a calculator per frame and is several times
slower; here each frame is one regex pass over the comment line and one ``split`` + ``astype``
over the atom block. Labels are found under the names people use (``REF_energy``, ``energy``,
``Energy``, ``free_energy``, ``forces``, ``force``, ``stress``, ``virial``, ...) unless
``opts.key_map`` names the key; the metadata says which source key each label came from
(``energy_source_key``, ``forces_source_key``, ...). Units are the manifest's (``opts.convert``).

Partitions seek to recorded byte offsets. For .gz/.xz a seek decompresses from the start, so a
compressed file is best read as one partition (OC20 S2EF ships 5,000-frame .xz files).

Plain sGDML-style XYZ (comment line = bare energy, columns 5-7 = forces) is read as positions only,
like ASE, unless ``opts.options["plain_xyz"] == "sgdml"`` declares that layout.

``opts.options["sidecar_txt"]`` (OC20 S2EF): line ``i`` of the ``<stem>.txt[.xz]`` beside each
file (``readers/oc20_txt.py``) adds ``sid``, ``fid`` and ``reference_energy`` to frame ``i``'s
metadata; the energy stays the raw DFT total. A missing side file is a ``ReaderError``, a frame
with no line a ``Rejected("sidecar:...")``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omni_data import units
from omni_data.readers import Partition, ReaderError, ReadOptions, frame_ranges
from omni_data.readers._common import open_binary, scalar_metadata, source_label
from omni_data.readers._xyz_atoms import atom_block, numbers
from omni_data.readers._xyz_frames import RawFrame, iter_frames, scan_offsets
from omni_data.readers._xyz_header import HeaderError, parse_header, parse_properties
from omni_data.record_checks import problem
from omni_data.schema import STRESS_ASYMMETRY_KEY, Record, Rejected, symmetric_voigt

__all__ = ["partitions", "read"]

ENERGY_KEYS = ("REF_energy", "energy", "Energy", "dft_energy", "DFT_energy", "total_energy", "free_energy")
FREE_ENERGY_KEYS = ("free_energy", "REF_free_energy")
FORCE_KEYS = ("REF_forces", "forces", "force", "DFT_forces", "dft_forces")
STRESS_KEYS = ("REF_stress", "stress", "DFT_stress")
VIRIAL_KEYS = ("REF_virial", "virial", "DFT_virial")
CHARGE_KEYS = ("charge", "total_charge", "REF_charge")
SPIN_KEYS = ("spin", "multiplicity", "spin_multiplicity", "total_spin_multiplicity")
MAGMOM_KEYS = ("magmoms", "magmom", "REF_magmoms", "initial_magmoms")
DEFAULT_PROPERTIES = [("species", "S", 1), ("pos", "R", 3)]
_HEADER_KEYS = {"Lattice", "Properties", "pbc"}


def _symbols() -> dict[bytes, int]:
    from ase.data import chemical_symbols

    table = {s.encode(): z for z, s in enumerate(chemical_symbols) if z > 0}
    table.update({s.upper().encode(): z for z, s in enumerate(chemical_symbols) if z > 0})
    table.update({s.lower().encode(): z for z, s in enumerate(chemical_symbols) if z > 0})
    return table


_SYMBOLS: dict[bytes, int] = {}


def partitions(path: Path, target: int) -> list[Partition]:
    """One pass over the file recording each frame's byte offset; partitions seek straight there."""
    with open_binary(path) as fh:
        starts = scan_offsets(fh)
    parts = []
    for a, b in frame_ranges(len(starts), target):
        offset, line = starts[a]
        parts.append(Partition(str(path), a, b, (("offset", offset), ("line", line))))
    return parts


def read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]:
    """Records (or Rejected) of frames ``part.start`` .. ``part.stop`` in Omni units."""
    if not _SYMBOLS:
        _SYMBOLS.update(_symbols())
    label = source_label(part.path, opts)
    ctx = _Context.of(opts)
    sidecar = _sidecar(part.path) if opts.options.get("sidecar_txt") else None
    n_wanted = None if part.stop is None else part.stop - part.start
    with open_binary(part.path) as fh:
        offset, line = int(part.get("offset", 0)), int(part.get("line", 1))
        if offset:
            fh.seek(offset)
        elif part.start:
            raise ReaderError(f"{part.path}: partition {part.key} has no byte offset; build it with partitions()")
        done = 0
        for raw in iter_frames(fh, offset, line, part.start):
            if n_wanted is not None and done >= n_wanted:
                break
            done += 1
            item = _frame(raw, part.path, label, opts, ctx)
            yield item if sidecar is None else _attach(item, sidecar, raw, label, opts)


def _sidecar(path: str) -> tuple[str, list[Any]]:
    """OC20 S2EF: the per-frame (sid, fid, reference_energy) lines of the ``.txt`` beside ``path``."""
    from omni_data.readers.oc20_txt import frame_metadata, txt_for

    txt = txt_for(path)
    if txt is None:
        raise ReaderError(
            f"{path}: reader option sidecar_txt is set but no .txt or .txt.xz with the same stem is beside it"
        )
    return str(txt), frame_metadata(txt)


def _attach(
    item: Record | Rejected, sidecar: tuple[str, list[Any]], raw: RawFrame, label: str, opts: ReadOptions
) -> Record | Rejected:
    """Put line ``i`` of the side file (sid, fid, reference_energy) into frame ``i``'s metadata."""
    txt, infos = sidecar
    if isinstance(item, Rejected):
        return item
    if item.source_index >= len(infos):
        return _reject(
            raw,
            item.source_file,
            label,
            opts,
            f"sidecar:{txt} has {len(infos)} lines, none for frame {item.source_index}",
        )
    item.metadata.update(infos[item.source_index].metadata())
    item.metadata["sidecar_file"] = Path(txt).name
    return item


@dataclass(frozen=True)
class _Context:
    """What one ``read`` call derives from its options once instead of once per frame."""

    used: frozenset[str]  # info keys never copied into metadata["info"]
    convert: bool  # False when opts.convert() would change nothing (eV, Å, eV/Å³, sign +1)

    @staticmethod
    def of(opts: ReadOptions) -> _Context:
        try:
            identity = (
                units.energy_factor(opts.energy_unit) == 1.0
                and units.length_factor(opts.length_unit) == 1.0
                and units.stress_factor(opts.stress_unit) * opts.stress_sign == 1.0
            )
        except ValueError:
            identity = False  # an unknown unit: convert() raises it for every frame, as it should
        return _Context(frozenset(opts.key_map.values()) | _HEADER_KEYS, not identity)


def _where(raw: RawFrame) -> str:
    return f"frame {raw.index} at line {raw.line_no} (byte {raw.offset})"


def _reject(raw: RawFrame, path: str, label: str, opts: ReadOptions, reason: str) -> Rejected:
    detail = {"byte_offset": raw.offset, "line": raw.line_no}
    return Rejected(path, raw.index, reason, opts.dataset, f"{label}:{raw.index}", detail)


def _frame(raw: RawFrame, path: str, label: str, opts: ReadOptions, ctx: _Context) -> Record | Rejected:
    if raw.error is not None:
        return _reject(raw, path, label, opts, raw.error)
    try:
        comment = raw.comment.decode("utf-8").strip()  # type: ignore[union-attr]
    except UnicodeDecodeError as exc:
        return _reject(
            raw,
            path,
            label,
            opts,
            f"parse:non-UTF-8 bytes in comment line of {_where(raw)} ({exc.reason} at {exc.start})",
        )
    try:
        info = parse_header(comment)
        spec = info.get("Properties")
        props = parse_properties(spec) if isinstance(spec, str) else None
    except HeaderError as exc:
        return _reject(raw, path, label, opts, f"parse:{exc} in {_where(raw)}")
    try:
        arrays = atom_block(raw.atoms or [], props or DEFAULT_PROPERTIES, props is None)
    except ValueError as exc:
        return _reject(raw, path, label, opts, f"parse:{exc} in {_where(raw)}")
    try:
        record = _build(info, arrays, props is None, comment, raw, path, label, opts, ctx)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        return _reject(raw, path, label, opts, f"bad_value:{exc} in {_where(raw)}")
    reason = problem(record)
    if reason is None:
        try:
            return record.normalized()
        except (ValueError, TypeError) as exc:
            reason = f"bad_shape:{exc}"
    return _reject(raw, path, label, opts, f"{reason} in {_where(raw)}")


def _pick(source: dict[str, Any], canonical: str, candidates: tuple[str, ...], opts: ReadOptions) -> str | None:
    """The source key for ``canonical``: the key map's if declared (must exist), else the first candidate present."""
    if canonical in opts.key_map:
        key = opts.key_map[canonical]
        return key if key in source else None
    for key in candidates:
        if key in source:
            return key
    return None


def _cell(info: dict[str, Any]) -> tuple[np.ndarray | None, np.ndarray]:
    lattice = info.get("Lattice")
    pbc_raw = info.get("pbc")
    if lattice is not None:
        lat = np.asarray(lattice, dtype=np.float64)
        if lat.shape != (9,):
            raise ValueError(f"Lattice has {lat.size} values, expected 9")
        cell = lat.reshape(3, 3)
    else:
        cell = None
    if pbc_raw is None:
        pbc = np.array([cell is not None] * 3)
    else:
        pbc = np.asarray(pbc_raw, dtype=bool).reshape(-1)
        if pbc.size == 1:
            pbc = np.repeat(pbc, 3)
        if pbc.size != 3:
            raise ValueError(f"pbc has {pbc.size} values, expected 3")
    if True not in pbc.tolist():  # pbc.any() of a 3-element bool array, without a numpy call
        cell = None
    elif cell is None:
        raise ValueError("pbc is true but the frame has no Lattice")
    return cell, pbc


def _stress(
    info: dict[str, Any], cell: np.ndarray | None, opts: ReadOptions, meta: dict[str, Any]
) -> np.ndarray | None:
    key = _pick(info, "stress", STRESS_KEYS, opts)
    vkey = None if key is not None else _pick(info, "virial", VIRIAL_KEYS, opts)
    if key is None and vkey is None:
        return None
    raw = np.asarray(info[key or vkey], dtype=np.float64).reshape(-1)  # type: ignore[index]
    if raw.size not in (6, 9):
        raise ValueError(f"{key or vkey} has {raw.size} values, expected 6 or 9")
    # A 3x3 is column-major (ASE writes stress.T.ravel()): m[i, j] = r[i + 3 j]. Its symmetric part
    # is kept and its asymmetry, in eV/Å³, noted for the ingest's sanity check (docs/harmonize.md).
    matrix = raw.reshape(3, 3).T if raw.size == 9 else raw
    if key is not None:
        voigt, asym = symmetric_voigt(matrix, units.stress_factor(opts.stress_unit))
        if asym > 0:
            meta[STRESS_ASYMMETRY_KEY] = asym
        meta["stress_source_key"] = key
        return voigt
    if cell is None:
        raise ValueError(f"{vkey} given for a non-periodic frame (no volume)")
    volume = abs(float(np.linalg.det(cell)))
    # virial is an energy: stress = -virial / V, brought to eV/Å³ here; convert() then applies
    # the declared stress unit and sign, which we divide out so they are not applied twice.
    to_ev_a3 = units.energy_factor(opts.energy_unit) / units.length_factor(opts.length_unit) ** 3
    voigt, asym = symmetric_voigt(matrix, to_ev_a3 / volume)
    if asym > 0:
        meta[STRESS_ASYMMETRY_KEY] = asym
    scale = to_ev_a3 / (units.stress_factor(opts.stress_unit) * opts.stress_sign)
    meta["stress_source_key"] = f"{vkey} (stress = -virial/volume)"
    return -voigt / volume * scale


def _energy_forces(
    info: dict[str, Any],
    arrays: dict[str, np.ndarray],
    plain: bool,
    comment: str,
    raw: RawFrame,
    opts: ReadOptions,
    meta: dict[str, Any],
) -> tuple[float | None, str, np.ndarray | None]:
    """(energy, energy_kind, forces) from the declared or recognised keys, recorded in ``meta``."""
    if plain and opts.options.get("plain_xyz") == "sgdml":
        meta["energy_source_key"] = "comment line (sGDML xyz)"
        meta["forces_source_key"] = "columns 5-7 (sGDML xyz)"
        return float(comment.split()[0]), opts.energy_kind, _plain_forces(raw)
    energy, kind, forces = None, opts.energy_kind, None
    candidates = FREE_ENERGY_KEYS + ENERGY_KEYS if opts.energy_key == "free_energy" else ENERGY_KEYS
    ekey = _pick(info, "energy", candidates, opts)
    if ekey is not None:
        energy = float(info[ekey])
        meta["energy_source_key"] = ekey
        kind = "free" if ekey in FREE_ENERGY_KEYS else kind
        others = [] if "energy" in opts.key_map else [k for k in candidates if k != ekey and k in info]
        if others:
            meta["energy_other_keys"] = others  # ambiguity made visible, not resolved silently
    fkey = _pick(arrays, "forces", FORCE_KEYS, opts)
    if fkey is not None:
        forces = np.asarray(arrays[fkey], dtype=np.float64)
        meta["forces_source_key"] = fkey
    return energy, kind, forces


def _build(
    info: dict[str, Any],
    arrays: dict[str, np.ndarray],
    plain: bool,
    comment: str,
    raw: RawFrame,
    path: str,
    label: str,
    opts: ReadOptions,
    ctx: _Context,
) -> Record:
    """One frame as a Record in Omni units (not yet normalized)."""
    pos_key = opts.key("positions", "pos")
    if pos_key not in arrays:
        raise ValueError(f"no {pos_key!r} column in Properties")
    cell, pbc = _cell(info)
    meta: dict[str, Any] = {}
    energy, kind, forces = _energy_forces(info, arrays, plain, comment, raw, opts, meta)
    record = Record(
        numbers=numbers(arrays, _SYMBOLS),
        positions=arrays[pos_key],
        id=opts.make_id(f"{label}:{raw.index}"),
        dataset=opts.dataset,
        task=opts.task,
        cell=cell,
        pbc=pbc,
        energy=energy,
        energy_kind=kind,
        forces=forces,
        stress=_stress(info, cell, opts, meta),
        source_file=path,
        source_index=raw.index,
        metadata=meta,
    )
    _extras(record, info, arrays, opts, meta)
    id_key = opts.key_map.get("id")
    if id_key is not None:
        if id_key not in info:
            raise ValueError(f"id key {id_key!r} missing")
        record.id = opts.make_id(f"{label}:{info[id_key]}")
    used = ctx.used.union([v for k, v in meta.items() if k.endswith("_source_key")])
    extra = scalar_metadata(info, used)
    if extra:
        meta["info"] = extra
    return opts.convert(record) if ctx.convert else record  # normalized by the caller once problem() has passed


def _extras(
    record: Record, info: dict[str, Any], arrays: dict[str, np.ndarray], opts: ReadOptions, meta: dict[str, Any]
) -> None:
    """Charge, spin, magmoms, tags and constraints (ASE's move_mask column) onto ``record``."""
    ckey = _pick(info, "charge", CHARGE_KEYS, opts)
    if ckey is not None:
        record.charge = float(info[ckey])
        meta["charge_source_key"] = ckey
    skey = _pick(info, "spin", SPIN_KEYS, opts)
    if skey is not None:
        record.spin = info[skey]  # judged by record_checks.drop_invalid_optional (2.5, NaN, text -> unknown)
        meta["spin_source_key"] = skey
    mkey = _pick(arrays, "magmoms", MAGMOM_KEYS, opts)
    if mkey is not None and np.asarray(arrays[mkey]).ndim == 1:
        record.magmoms = np.asarray(arrays[mkey], dtype=np.float64)
        meta["magmoms_source_key"] = mkey
    if "tags" in arrays:
        record.tags = np.asarray(arrays["tags"], dtype=np.int64)
    if "move_mask" in arrays:  # ASE writes FixAtoms as move_mask:L:1 (or L:3 per axis)
        mask = np.asarray(arrays["move_mask"], dtype=bool)
        record.fixed = ~(mask if mask.ndim == 1 else mask.any(axis=1))


def _plain_forces(raw: RawFrame) -> np.ndarray:
    rows = [line.split() for line in raw.atoms or []]
    if any(len(r) < 7 for r in rows):
        raise ValueError("sGDML xyz needs 7 columns (symbol, x, y, z, fx, fy, fz)")
    return np.array([r[4:7] for r in rows], dtype=np.bytes_).astype(np.float64)
