"""Write one recompute job directory per selected structure.

VASP protocols go through the pymatgen input set the protocol names (INCAR, KPOINTS, POSCAR, and
POTCAR when ``PMG_VASP_PSP_DIR`` is configured, else POTCAR.spec); molecules are boxed per
``molecules.py``. Local protocols (tblite, PySCF) need only ``record.json``. Every job dir gets
``job.json`` and ``record.json``; the jobs root gets the jobs table. Directory names come from
``safeio.safe_name(record id)``, so they cannot escape the root nor inject shell.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.recompute import jobs
from omni_data.recompute.molecules import Refused, box_molecule, is_molecule
from omni_data.recompute.protocols import Protocol, protocol_sha256
from omni_data.record_checks import problem
from omni_data.safeio import safe_name
from omni_data.schema import Record

__all__ = [
    "Source",
    "potcar_dir",
    "vasp_input_set",
    "job_name",
    "emit_record",
    "emit_records",
    "read_selection",
    "emit_selection",
]


@dataclass
class Source:
    """Where a selected record came from (a row of selection.parquet)."""

    record_id: str
    source_task: str = ""
    dataset: str = ""
    store: str = ""
    rank: int | None = None
    distance: float | None = None


def potcar_dir() -> str | None:
    """pymatgen's configured POTCAR directory, or None."""
    from pymatgen.core import SETTINGS

    value = SETTINGS.get("PMG_VASP_PSP_DIR")
    return str(value) if value and Path(str(value)).is_dir() else None


def _input_set_class(name: str) -> type:
    from pymatgen.io.vasp import sets

    table = {
        "MPStaticSet": sets.MPStaticSet,
        "MPRelaxSet": sets.MPRelaxSet,
        "MPScanStaticSet": sets.MPScanStaticSet,
        "MatPESStaticSet": sets.MatPESStaticSet,
    }
    return table[name]


def vasp_input_set(record: Record, protocol: Protocol, potcars: bool) -> Any:
    """The pymatgen input set for ``record`` under ``protocol`` (molecules boxed, Γ-only)."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.vasp.inputs import Kpoints

    if protocol.vasp is None:
        raise ValueError(f"{protocol.path}: protocol {protocol.name} has no vasp settings")
    settings = protocol.vasp
    incar = dict(settings.incar)
    kpoints: Any = dict(settings.kpoints) if settings.kpoints else {}
    extra: dict[str, Any] = {}
    if is_molecule(record):
        boxed = box_molecule(record, protocol.molecule, potcars)
        positions, cell = boxed.positions, boxed.cell
        incar.update(boxed.incar)
        kpoints = Kpoints.gamma_automatic((1, 1, 1))
        charge = boxed.charge
        if abs(charge) > 1e-8:
            extra["use_structure_charge"] = True
    else:
        positions, cell, charge = record.positions, record.cell, 0.0
    species = [int(z) for z in record.numbers]
    props = {}
    if settings.use_record_magmoms and record.magmoms is not None:
        props["magmom"] = [float(m) for m in record.magmoms]
    structure = Structure(
        Lattice(np.asarray(cell, dtype=float)),
        species,
        np.asarray(positions, dtype=float),
        coords_are_cartesian=True,
        charge=charge,
        site_properties=props or None,
    )
    cls = _input_set_class(settings.input_set)
    return cls(structure, user_incar_settings=incar, user_kpoints_settings=kpoints, **settings.set_kwargs, **extra)


def job_name(record_id: str) -> str:
    return safe_name(record_id)


def emit_record(record: Record, protocol: Protocol, root: Path, source: Source, force: bool = False) -> dict[str, Any]:
    """Write one job dir for ``record`` under ``root``; returns its jobs-table row.

    A finished job (DONE) is kept unless ``force``. A structure the protocol refuses gets a row
    with status ``refused`` and its reason, and no directory.
    """
    root = Path(root)
    name = job_name(record.id)
    row: dict[str, Any] = {
        "job": name,
        "record_id": record.id,
        "source_task": source.source_task or record.task,
        "dataset": source.dataset or record.dataset,
        "protocol": protocol.name,
        "engine": protocol.engine,
        "status": "pending",
        "reason": "",
        "n_atoms": record.n_atoms,
    }
    final = root / name
    if not force and final.is_dir() and (final / jobs.JOB_FILE).is_file():
        state = jobs.job_state(final)
        if state.state in ("done", "running"):
            row.update(status=state.state, reason="kept: already " + state.state)
            return row
    why = problem(record)
    if not why and protocol.engine == "pyscf" and not is_molecule(record):
        why = "refused:PySCF protocols compute molecules only; this structure is periodic"
    if why:
        row.update(status="refused", reason=why)
        return row
    tmp = root / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        potcar, expected, writer = "none", None, None
        if protocol.engine == "vasp":
            potcar, expected = _write_vasp(record, protocol, tmp)
            writer = f"pymatgen {_version('pymatgen')}"
        history = _carry_history(final, tmp) if final.is_dir() else []
        jobs.write_json_atomic(tmp / jobs.RECORD_FILE, jobs.record_to_json(record))
        jobs.write_json_atomic(
            tmp / jobs.JOB_FILE,
            {
                "job": name,
                "record_id": record.id,
                "source_task": row["source_task"],
                "dataset": row["dataset"],
                "store": source.store,
                "rank": source.rank,
                "distance": source.distance,
                "protocol": protocol.name,
                "protocol_spec": protocol.as_dict(),
                "protocol_sha256": protocol_sha256(protocol.path),
                "expected": expected,
                "input_writer": writer,
                "omni_version": _version("omni"),
                "history": history,
                "matches_task": protocol.task,
                "engine": protocol.engine,
                "method": protocol.method.name if protocol.method else None,
                "potcar": potcar,
                "status": "pending",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "n_atoms": record.n_atoms,
            },
        )
        jobs.replace_dir_atomic(tmp, final)
    except Refused as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        row.update(status="refused", reason=exc.reason)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return row


def _write_vasp(record: Record, protocol: Protocol, out: Path) -> tuple[str, dict[str, Any]]:
    """Write VASP inputs into ``out``; returns (``"written"`` or ``"spec"`` for the POTCAR, the
    settings collect will hold the output to: ``verify.expected_vasp``)."""
    from omni_data.recompute.verify import expected_vasp

    have_potcars = potcar_dir() is not None
    vis = vasp_input_set(record, protocol, have_potcars)
    if not have_potcars and not protocol.vasp.potcar_spec_without_psp_dir:  # type: ignore[union-attr]
        raise ValueError(f"{protocol.path}: PMG_VASP_PSP_DIR is not configured and the protocol requires real POTCARs")
    vis.write_input(str(out), potcar_spec=not have_potcars)
    expected = expected_vasp(vis, np.asarray(vis.structure.lattice.matrix))
    return ("written" if have_potcars else "spec"), expected


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


# files a job dir starts with; everything else in it is what an attempt produced
INPUT_FILES = frozenset({jobs.JOB_FILE, jobs.RECORD_FILE, "INCAR", "KPOINTS", "POSCAR", "POTCAR", "POTCAR.spec"})
HISTORY_DIR = "history"


def _carry_history(old: Path, new: Path) -> list[dict[str, Any]]:
    """The old job dir's history plus one entry for the attempt being replaced.

    The attempt's outputs and markers (vasprun.xml, OUTCAR, results.*, FAILED, COLLECTED, ...)
    move to ``new/history/<n>/``, so what was refused stays inspectable next to why and when."""
    try:
        old_job = jobs.read_job(old)
        state = jobs.job_state(old)
    except ValueError:
        return []
    history = list(old_job.get("history") or [])
    produced = sorted(p.name for p in old.iterdir() if p.name not in INPUT_FILES and p.name != HISTORY_DIR)
    if not produced and state.state == "pending":
        return history  # nothing ran: nothing to remember
    n = len(history) + 1
    entry: dict[str, Any] = {
        "attempt": n,
        "state": state.state,
        "reason": state.reason,
        "emitted": old_job.get("created"),
        "protocol": old_job.get("protocol"),
        "protocol_sha256": old_job.get("protocol_sha256"),
        "replaced": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "files": f"{HISTORY_DIR}/{n}" if produced else None,
    }
    failed = old / "FAILED"
    if failed.is_file():
        entry["failed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(failed.stat().st_mtime))
    collected = old / "COLLECTED"
    if collected.is_file():
        entry["quarantine_shard"] = collected.read_text(encoding="utf-8").strip()
    if (old / HISTORY_DIR).is_dir():
        os.replace(old / HISTORY_DIR, new / HISTORY_DIR)
    if produced:
        dest = new / HISTORY_DIR / str(n)
        dest.mkdir(parents=True, exist_ok=True)
        for name in produced:
            os.replace(old / name, dest / name)
    history.append(entry)
    return history


def emit_records(
    pairs: Iterable[tuple[Record, Source]], protocol: Protocol, root: Path, force: bool = False
) -> list[dict[str, Any]]:
    """Emit every (record, source) pair and write the jobs table; returns the table rows."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for rec, src in pairs:
        name = job_name(rec.id)
        if name in seen:
            raise ValueError(
                f"{root}: record {rec.id!r} is selected twice (or maps to the same job dir as {seen[name]!r})"
            )
        seen[name] = rec.id
        rows.append(emit_record(rec, protocol, root, src, force=force))
    jobs.write_table(root, rows)
    if protocol.engine == "vasp" and potcar_dir() is None:
        print(
            f"{root}: PMG_VASP_PSP_DIR is not configured, so POTCAR.spec (symbols only) was written "
            "instead of POTCAR; run `pmg config --add PMG_VASP_PSP_DIR <dir>` and re-emit, or build "
            "POTCARs from the spec on the cluster",
            file=sys.stderr,
        )
    return rows


def read_selection(path: Path) -> list[Source]:
    """Rows of a selection.parquet (columns id, task, dataset, store, rank, distance)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = {"id", "store"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: selection lacks column(s) {', '.join(sorted(missing))}")
    cols = table.to_pydict()
    n = table.num_rows
    for name in ("task", "dataset", "rank", "distance"):
        cols.setdefault(name, [None] * n)
    return [
        Source(
            record_id=str(cols["id"][i]),
            source_task=cols["task"][i] or "",
            dataset=cols["dataset"][i] or "",
            store=str(cols["store"][i]),
            rank=cols["rank"][i],
            distance=cols["distance"][i],
        )
        for i in range(n)
    ]


def emit_selection(selection: Path, protocol: Protocol, root: Path, force: bool = False) -> list[dict[str, Any]]:
    """Load each selected record from its store and emit it (stores opened once each)."""
    from omni_data.store import Store

    sources = read_selection(Path(selection))
    stores: dict[str, Any] = {}

    def pairs() -> Iterable[tuple[Record, Source]]:
        for src in sources:
            store_path = src.store
            if store_path and not Path(store_path).exists() and not Path(store_path).is_absolute():
                store_path = str((Path(selection).parent / store_path).resolve())
            if store_path not in stores:
                stores[store_path] = Store(store_path)
            try:
                record = stores[store_path].get(src.record_id)
            except KeyError:
                raise ValueError(f"{selection}: record {src.record_id!r} not found in store {store_path}") from None
            yield record, src

    return emit_records(pairs(), protocol, root, force=force)
