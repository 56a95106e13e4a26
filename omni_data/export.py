"""Write a store (or a ``select`` view) as extxyz or ``.aselmdb`` so other trainers read it.

extxyz (``ase.io.write``) is what SevenNet and MACE read; ``.aselmdb`` (ase-db-backends'
``LMDBDatabase`` via ``ase.db.connect``) is what fairchem's ``AseDBDataset`` reads. Labels travel
on a SinglePointCalculator (energy, forces, stress in ASE Voigt/sign, free_energy for
``energy_kind == "free"``); id, dataset, task, charge and spin travel in ``info`` / key-value pairs,
and so does a bridge record's provenance (``recompute.collect.PROVENANCE_KEYS``).
Both writers go to a temp name and are renamed into place only when complete.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from omni_data.schema import Record

EXPORT_FORMATS = ("extxyz", "aselmdb")


def _records(source: Any, task: str | None = None, dataset: str | None = None) -> Iterable[Record]:
    if task is not None or dataset is not None:
        source = source.select(task=task, dataset=dataset)
    return source


def _atoms(records: Iterable[Record]) -> Iterator[Any]:
    from omni_data.store.atoms import record_to_atoms

    for record in records:
        atoms = record_to_atoms(record)
        atoms.info.update(provenance_info(record))
        yield atoms


def provenance_info(record: Record) -> dict[str, Any]:
    """A bridge record's provenance (source record, protocol and its sha256, code versions, job
    dir: ``recompute.collect.PROVENANCE_KEYS``) as flat scalars for extxyz info / aselmdb keys."""
    from omni_data.recompute.collect import PROVENANCE_KEYS

    meta = record.metadata or {}
    out: dict[str, Any] = {}
    for key in PROVENANCE_KEYS:
        value = meta.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != "":
            out[key] = value
    return out


def export_extxyz(source: Any, out: Path, task: str | None = None, dataset: str | None = None,
                  chunk: int = 2000) -> int:
    """Write every record of ``source`` (a Store or view) to one extxyz file; returns the count."""
    from ase.io import write

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            batch: list[Any] = []
            for atoms in _atoms(_records(source, task, dataset)):
                batch.append(atoms)
                if len(batch) >= chunk:
                    write(fh, batch, format="extxyz")
                    n += len(batch)
                    batch = []
            if batch:
                write(fh, batch, format="extxyz")
                n += len(batch)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _key_values(atoms: Any) -> dict[str, Any]:
    info = atoms.info
    from omni_data.recompute.collect import PROVENANCE_KEYS

    keys = ("omni_id", "dataset", "task", "energy_kind", "weight", "charge", "spin") + PROVENANCE_KEYS
    return {k: info[k] for k in keys if k in info}


def export_aselmdb(source: Any, out: Path, task: str | None = None, dataset: str | None = None) -> int:
    """Write every record of ``source`` to a fairchem-readable ``.aselmdb``; returns the count."""
    import ase.db

    out = Path(out)
    if out.suffix != ".aselmdb":
        raise ValueError(f"{out}: an aselmdb export must end in .aselmdb (ase.db picks the backend by suffix)")
    tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
    n = 0
    try:
        db = ase.db.connect(str(tmp), append=False, use_lock_file=False)
        with db:  # one LMDB write transaction for the whole export
            for atoms in _atoms(_records(source, task, dataset)):
                kv = _key_values(atoms)
                atoms.info.clear()
                db.write(atoms, key_value_pairs=kv)
                n += 1
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}-lock").unlink(missing_ok=True)
    Path(f"{out}-lock").unlink(missing_ok=True)
    return n


def export_store(source: Any, fmt: str, out: Path, task: str | None = None, dataset: str | None = None) -> int:
    """Dispatch on ``fmt`` (one of ``EXPORT_FORMATS``)."""
    if fmt == "extxyz":
        return export_extxyz(source, out, task, dataset)
    if fmt == "aselmdb":
        return export_aselmdb(source, out, task, dataset)
    raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
