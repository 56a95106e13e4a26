"""Write a store (or a ``select`` view) as extxyz or ``.aselmdb`` so other trainers read it.

extxyz (``ase.io.write``) is what SevenNet and MACE read; ``.aselmdb`` (ase-db-backends'
``LMDBDatabase`` via ``ase.db.connect``) is what fairchem's ``AseDBDataset`` reads. Labels travel
on a SinglePointCalculator (energy, forces, stress in ASE Voigt/sign, free_energy for
``energy_kind == "free"``); id, dataset, task, charge and spin travel in ``info`` / key-value pairs,
and so does a bridge record's provenance (``recompute.collect.PROVENANCE_KEYS``). The source's
own info keys that the reader kept (``metadata["info"]``: ``config_type``, ``smiles``, ...,
what MACE and wfl weight and filter by) travel too, under their own names; Omni's keys win a clash.
Both writers go to a temp name in the output's folder and are renamed into place only when
complete and not empty: a failed or empty export leaves no file behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from omni_data.schema import Record

__all__ = ["source_info", "provenance_info", "export_extxyz", "export_aselmdb", "export_store"]

OMNI_INFO_KEYS = ("omni_id", "dataset", "task", "energy_kind", "weight", "charge", "spin")


def _records(source: Any, task: str | None = None, dataset: str | None = None) -> Iterable[Record]:
    if task is not None or dataset is not None:
        source = source.select(task=task, dataset=dataset)
    return source


def _atoms(records: Iterable[Record]) -> Iterator[Any]:
    from omni_data.store.atoms import record_to_atoms

    for record in records:
        atoms = record_to_atoms(record)
        atoms.info.update({k: v for k, v in source_info(record).items() if k not in atoms.info})
        atoms.info.update(provenance_info(record))
        yield atoms


def source_info(record: Record) -> dict[str, Any]:
    """The source file's info keys the reader kept (``metadata["info"]``), e.g. ``config_type``."""
    info = (record.metadata or {}).get("info")
    if not isinstance(info, dict):
        return {}
    return {str(k): v for k, v in info.items() if str(k) not in OMNI_INFO_KEYS and v is not None}


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


def export_extxyz(
    source: Any, out: Path, task: str | None = None, dataset: str | None = None, chunk: int = 2000
) -> int:
    """Write every record of ``source`` (a Store or view) to one extxyz file; returns the count."""
    from ase.io import write

    out = _checked_out(out)
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
        _nonempty(n, source, task, dataset)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _checked_out(out: Path) -> Path:
    """``out`` when its folder exists and it is not a folder; else an error naming the folder."""
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"{out}: is a folder; name the file to write")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out}: folder {out.parent} does not exist (create it first)")
    return out


def _nonempty(n: int, source: Any, task: str | None, dataset: str | None) -> None:
    """ValueError (nothing is written) when the export selected no records."""
    if n:
        return
    where = getattr(source, "path", "export")
    wanted = ", ".join(f"{k} {v!r}" for k, v in (("task", task), ("dataset", dataset)) if v is not None)
    if not wanted:
        raise ValueError(f"{where}: the store holds no records; nothing written")
    known = _known_values(source)
    hint = "; ".join(f"{k}s in this store: {', '.join(v) or '-'}" for k, v in known.items())
    raise ValueError(f"{where}: no records with {wanted}; nothing written" + (f" ({hint})" if hint else ""))


def _known_values(source: Any) -> dict[str, list[str]]:
    """The store's tasks and datasets (its catalog counts) for an error message; {} if unknown."""
    counts = getattr(getattr(source, "catalog", None), "counts", None)
    if not isinstance(counts, dict):
        return {}
    return {key: sorted(map(str, counts.get(f"by_{key}") or {})) for key in ("task", "dataset")}


# ase.db key-value pairs: identifiers that are not ase.db's own columns
_DB_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _key_values(atoms: Any) -> dict[str, Any]:
    from ase.db.core import reserved_keys

    from omni_data.recompute.collect import PROVENANCE_KEYS

    info = atoms.info
    out = {k: info[k] for k in OMNI_INFO_KEYS + PROVENANCE_KEYS if k in info}
    for key, value in info.items():  # the source's scalar info keys (config_type, ...)
        if (
            key not in out
            and key not in reserved_keys
            and _DB_KEY.match(key)
            and isinstance(value, (str, int, float))
            and not isinstance(value, bool)
        ):
            out[key] = value
    return out


def export_aselmdb(source: Any, out: Path, task: str | None = None, dataset: str | None = None) -> int:
    """Write every record of ``source`` to a fairchem-readable ``.aselmdb``; returns the count."""
    import ase.db

    out = _checked_out(out)
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
        _nonempty(n, source, task, dataset)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}-lock").unlink(missing_ok=True)
    Path(f"{out}-lock").unlink(missing_ok=True)
    return n


Exporter = Callable[[Any, Path, "str | None", "str | None"], int]

# --format name -> writer; ``omni-data export --format`` offers exactly these
EXPORTERS: dict[str, Exporter] = {
    "extxyz": export_extxyz,
    "aselmdb": export_aselmdb,
}
EXPORT_FORMATS: tuple[str, ...] = tuple(EXPORTERS)


def export_store(source: Any, fmt: str, out: Path, task: str | None = None, dataset: str | None = None) -> int:
    """Write ``source`` with the ``EXPORTERS`` entry ``fmt``; returns the number of records."""
    try:
        writer = EXPORTERS[fmt]
    except KeyError:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(EXPORTERS)}") from None
    return writer(source, out, task, dataset)
