"""QCML (Ganscha et al. 2025; TFDS ``qcml/dft_force_field``): TFRecord shards of ``tf.train.Example``.

Features used (the ``dft_force_field`` TFRecord schema): ``atomic_numbers`` (int64 list),
``positions`` (float list, n*3), ``pbe0_energy`` (float), ``pbe0_forces`` (float list, n*3),
``pbe0_formation_energy`` (float), ``charge`` and ``multiplicity`` (int64), ``is_outlier``
(int64; 1 -> Rejected ``filter:is_outlier``), ``key_hash`` (bytes, the record id). Read with the
pure-Python ``_tfrecord`` module: no TensorFlow. ``partitions`` reads only record headers.

Units are declared by the manifest (``opts.energy_unit``, ``opts.length_unit``; forces in
``energy/length`` unless ``opts.options["force_unit"]`` names another, e.g. ``"hartree/bohr"``).
``opts.key_map`` renames ``energy``/``forces``/``positions``/``numbers``/``charge``/``spin``/``id``.
Option ``verify_crc`` (default True) checks every record's CRC-32C: a record whose data CRC is
wrong is ``Rejected`` (``parse:... bad data CRC``) and the rest are read; damaged framing (a length
whose CRC is wrong, or over 1 GiB) cannot be resynchronised and is a ``ReaderError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from omni_data import units
from omni_data.readers import Partition, ReaderError, ReadOptions
from omni_data.readers._common import open_binary, source_label
from omni_data.readers._finish import finish, reject
from omni_data.readers._tfrecord import TFRecordError, parse_example, read_records, record_offsets
from omni_data.schema import Record, Rejected

__all__ = ["partitions", "example_record", "read"]

DEFAULT_KEYS = {
    "numbers": "atomic_numbers",
    "positions": "positions",
    "energy": "pbe0_energy",
    "forces": "pbe0_forces",
    "charge": "charge",
    "spin": "multiplicity",
    "id": "key_hash",
}


def partitions(path: Path, target: int) -> list[Partition]:
    target = max(1, int(target))
    try:
        with open_binary(path) as fh:
            offsets = record_offsets(fh, str(path))
    except (OSError, EOFError, TFRecordError) as exc:
        raise ReaderError(f"{path}: cannot read as TFRecord ({exc})") from exc
    return [
        Partition(str(path), s, min(s + target, len(offsets)), (("offset", offsets[s]),))
        for s in range(0, len(offsets), target)
    ]


def _force_factor(opts: ReadOptions) -> float:
    unit = opts.options.get("force_unit")
    if not unit:
        return units.energy_factor(opts.energy_unit) / units.length_factor(opts.length_unit)
    energy, _, length = str(unit).partition("/")
    return units.energy_factor(energy) / units.length_factor(length)


def _scalar(values: Any) -> float | None:
    if values is None or len(values) == 0:
        return None
    if len(values) != 1:
        raise ValueError(f"expected one value, got {len(values)}")
    return float(values[0])


def _text(values: Any) -> str | None:
    if not values:
        return None
    raw = values[0]
    if isinstance(raw, bytes):
        try:
            text = raw.decode("ascii")
            return text if text.isprintable() else raw.hex()
        except UnicodeDecodeError:
            return raw.hex()
    return str(raw)


def example_record(ex: dict[str, Any], opts: ReadOptions, path: str, index: int, fallback_id: str) -> Record:
    """One decoded Example as a Record in Omni units; KeyError/ValueError on bad content."""
    key = {name: opts.key_map.get(name, default) for name, default in DEFAULT_KEYS.items()}
    e_fac = units.energy_factor(opts.energy_unit)
    l_fac = units.length_factor(opts.length_unit)
    numbers = np.asarray(ex[key["numbers"]], dtype=np.int64)
    positions = np.asarray(ex[key["positions"]], dtype=np.float64).reshape(-1, 3) * l_fac
    energy = _scalar(ex.get(key["energy"]))
    raw_forces = ex.get(key["forces"])
    forces = (
        None
        if raw_forces is None or len(raw_forces) == 0
        else np.asarray(raw_forces, np.float64).reshape(-1, 3) * _force_factor(opts)
    )
    charge = _scalar(ex.get(key["charge"]))
    spin = _scalar(ex.get(key["spin"]))
    source_id = _text(ex.get(key["id"])) or fallback_id
    meta: dict[str, Any] = {}
    formation = _scalar(ex.get("pbe0_formation_energy"))
    if formation is not None and np.isfinite(formation):
        meta["formation_energy"] = formation * e_fac
    return Record(
        numbers=numbers,
        positions=positions,
        id=opts.make_id(source_id),
        dataset=opts.dataset,
        task=opts.task,
        energy=None if energy is None else energy * e_fac,
        energy_kind=opts.energy_kind,
        forces=forces,
        charge=charge,
        spin=spin,  # judged by record_checks.drop_invalid_optional
        source_file=path,
        source_index=index,
        metadata=meta,
    )


def read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]:
    label = source_label(part.path, opts)
    count = (part.stop if part.stop is not None else 2**62) - part.start
    verify = bool(opts.options.get("verify_crc", True))
    with open_binary(part.path) as fh:
        records = read_records(fh, part.path, int(part.get("offset", 0)), count, verify)
        index = part.start
        while True:
            try:
                data = next(records)
            except StopIteration:
                break
            except TFRecordError as exc:
                raise ReaderError(str(exc)) from exc
            if isinstance(data, TFRecordError):  # this record's bytes are damaged; the others are not
                yield reject(opts, part.path, index, f"parse:{data}")
                index += 1
                continue
            try:
                ex = parse_example(data)
                outlier = ex.get("is_outlier")
                sid = _text(ex.get(opts.key_map.get("id", "key_hash"))) or f"{label}/{index}"
                if outlier is not None and len(outlier) and int(outlier[0]) != 0:
                    yield reject(opts, part.path, index, "filter:is_outlier", sid)
                else:
                    yield finish(example_record(ex, opts, part.path, index, f"{label}/{index}"), opts, convert=False)
            except (KeyError, ValueError, TFRecordError) as exc:
                yield reject(opts, part.path, index, f"parse:{type(exc).__name__}: {exc}")
            index += 1
    if part.stop is not None and index != part.stop:
        raise ReaderError(f"{part.path}: partition {part.key} ended after {index - part.start} of {count} records")
