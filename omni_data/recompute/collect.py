"""Collect finished recompute jobs into the store as the bridge task.

For each job dir that is done (or failed) and not yet collected:

* VASP: the vasprun.xml must be closed (``</modeling>``), parse, hold at least one ionic step,
  have its final ionic step electronically converged (fewer SCF steps than NELM, the rule
  pymatgen and custodian use) and, for relaxations (IBRION 1-3, NSW > 0), stop before NSW. The
  final ionic step becomes the record, read through ``omni_data.readers.vasp``.
* Local runners: ``results.json`` + ``results.npz`` with ``converged: true``.

Anything else becomes a ``Rejected`` with a ``"<kind>:<detail>"`` reason in the shard's
quarantine, and the job gets a FAILED marker so ``omni-data jobs --reemit-failed`` can redo it.
Each stored record links back: ``metadata["source_id"]``, ``["source_task"]``, ``["protocol"]``.
"""
from __future__ import annotations

import json
import os
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.recompute import jobs
from omni_data.recompute.molecules import is_molecule
from omni_data.schema import Record, Rejected, problem

COLLECTED = "COLLECTED"
RELAX_IBRION = (1, 2, 3)


@dataclass
class Collected:
    """What one collect pass found: records to store, rejections, and jobs not ready yet."""

    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    not_ready: dict[str, str] = field(default_factory=dict)  # job name -> state
    jobs: list[Path] = field(default_factory=list)  # job dirs this pass decided on


class JobReject(Exception):
    def __init__(self, reason: str, source_file: str):
        super().__init__(reason)
        self.reason = reason
        self.source_file = source_file


def vasprun_verdict(path: Path) -> tuple[Any, str | None]:
    """Parse ``path`` with pymatgen; returns (Vasprun or None, reason or None when usable)."""
    if not path.is_file():
        return None, f"missing:no vasprun.xml in {path.parent.name}"
    if not _closed(path):
        return None, "parse:truncated vasprun.xml (no closing </modeling>; VASP did not finish)"
    from pymatgen.io.vasp.outputs import Vasprun

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vr = Vasprun(str(path), parse_dos=False, parse_eigen=False, parse_projected_eigen=False,
                         parse_potcar_file=False, exception_on_bad_xml=True)
    except Exception as exc:  # pymatgen raises many types on broken XML
        return None, f"parse:vasprun.xml unreadable ({type(exc).__name__}: {exc})"
    if not vr.ionic_steps:
        return None, "parse:vasprun.xml has no ionic step"
    nelm = int(vr.parameters.get("NELM", 60))
    n_scf = len(vr.ionic_steps[-1].get("electronic_steps", []))
    if n_scf >= nelm:
        return vr, f"unconverged:electronic (final ionic step used all NELM={nelm} SCF steps)"
    nsw = int(vr.parameters.get("NSW", 0))
    ibrion = int(vr.parameters.get("IBRION", -1))
    if nsw > 0 and ibrion in RELAX_IBRION and len(vr.ionic_steps) >= nsw:
        return vr, f"unconverged:ionic (relaxation reached NSW={nsw} steps)"
    return vr, None


def _closed(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 256))
        return b"</modeling>" in fh.read()


def _final_vasp_record(path: Path) -> Record:
    """The final ionic step as a Record, read by the registered ``vasp`` reader (Omni's units)."""
    from omni_data.readers import ReadOptions, ReaderError, get_reader

    reader = get_reader("vasp")
    try:
        parts = reader.partitions(path, 1)  # one partition per ionic step: read only the final one
    except ReaderError as exc:
        raise JobReject(f"parse:{exc}", str(path)) from None
    last: Record | Rejected | None = None
    for item in reader.read(parts[-1], ReadOptions(dataset="bridge", task="bridge")):
        last = item
    if isinstance(last, Rejected):
        raise JobReject(last.reason, str(path))
    if last is None:
        raise JobReject("parse:vasp reader found no frame", str(path))
    return last


def _add_outcar_magmoms(record: Record, job_dir: Path) -> None:
    """vasprun.xml has no per-atom moments; take them from the OUTCAR's final step when it matches.

    Matching means same atomic numbers in the same order and positions within 1e-3 Å; the outcome
    is written to ``metadata["magmoms_source"]`` (``"OUTCAR"`` or why not)."""
    outcar = job_dir / "OUTCAR"
    if record.magmoms is not None or not outcar.is_file():
        return
    from omni_data.readers import ReadOptions, ReaderError, get_reader

    reader = get_reader("vasp")
    try:
        parts = reader.partitions(outcar, 1)
        items = list(reader.read(parts[-1], ReadOptions(dataset="bridge", task="bridge")))
    except (ReaderError, OSError, ValueError) as exc:
        record.metadata["magmoms_source"] = f"none: OUTCAR unreadable ({exc})"
        return
    last = items[-1] if items else None
    if not isinstance(last, Record) or last.magmoms is None:
        record.metadata["magmoms_source"] = "none: OUTCAR final step has no magnetization"
        return
    same = (np.array_equal(last.numbers, record.numbers)
            and np.allclose(last.positions, record.positions, atol=1e-3))
    if not same:
        record.metadata["magmoms_source"] = "none: OUTCAR final step does not match vasprun.xml"
        return
    record.magmoms = np.asarray(last.magmoms, dtype=float)
    record.metadata["magmoms_source"] = "OUTCAR"


def _local_record(job_dir: Path) -> Record:
    rpath = job_dir / "results.json"
    try:
        res = json.loads(rpath.read_text(encoding="utf-8"))
        arrays = np.load(job_dir / res.get("arrays", "results.npz"))
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        raise JobReject(f"parse:local results unreadable ({exc})", str(rpath)) from None
    if not res.get("converged"):
        raise JobReject(f"unconverged:{res.get('method')} reported converged=false", str(rpath))
    return Record(
        numbers=arrays["numbers"], positions=arrays["positions"],
        cell=arrays["cell"] if "cell" in arrays.files else None, pbc=arrays["pbc"],
        energy=float(res["energy"]), energy_kind=res.get("energy_kind", "total"),
        forces=arrays["forces"], stress=arrays["stress"] if "stress" in arrays.files else None,
        charge=res.get("charge"), spin=res.get("multiplicity"),
        id="", dataset="bridge", task="bridge",
        metadata={"method": res.get("method"), "versions": res.get("versions", {}),
                  "wall_time_s": res.get("wall_time_s")},
    )


def collect_job(job_dir: Path, task: str = "bridge", dataset: str = "bridge") -> Record:
    """The bridge Record of one finished job; ``JobReject`` with the reason when unusable."""
    job = jobs.read_job(job_dir)
    state = jobs.job_state(job_dir)
    if state.state == "failed":
        raise JobReject(state.reason, str(job_dir / "FAILED"))
    if job.get("engine") == "vasp":
        path = job_dir / "vasprun.xml"
        _vr, reason = vasprun_verdict(path)
        if reason:
            raise JobReject(reason, str(path))
        record = _final_vasp_record(path)
        _add_outcar_magmoms(record, job_dir)
        source_file = str(path)
    else:
        record = _local_record(job_dir)
        source_file = str(job_dir / "results.json")
    source = jobs.read_record(job_dir)
    if sorted(record.numbers.tolist()) != sorted(source.numbers.tolist()):
        raise JobReject("bad_value:output composition differs from the job's structure", source_file)
    if is_molecule(source) and not is_molecule(record):
        # a molecule computed in a vacuum box: store it as the molecule it is (no cell, no stress)
        record.cell, record.pbc, record.stress = None, np.zeros(3, dtype=bool), None
        record.metadata = {**record.metadata, "boxed_molecule": True}
    if record.charge is None:
        record.charge = source.charge
    if record.spin is None:
        record.spin = source.spin
    record.id = f"{dataset}:{job.get('protocol')}/{job.get('record_id')}"
    record.dataset, record.task = dataset, task
    record.source_file, record.source_index = source_file, 0
    record.metadata = {**record.metadata, "source_id": job.get("record_id"), "source_task": job.get("source_task"),
                       "protocol": job.get("protocol"), "engine": job.get("engine"), "job": job_dir.name}
    why = problem(record)
    if why:
        raise JobReject(why, source_file)
    return record.normalized()


def collect(root: Path, task: str = "bridge", dataset: str = "bridge") -> Collected:
    """Decide on every done/failed, not yet collected job under ``root`` (writes FAILED for rejects)."""
    out = Collected()
    for job_dir in jobs.iter_job_dirs(root):
        if (job_dir / COLLECTED).is_file():
            continue
        state = jobs.job_state(job_dir)
        if state.state in ("pending", "running"):
            out.not_ready[job_dir.name] = state.state
            continue
        job = state.job or {}
        try:
            out.records.append(collect_job(job_dir, task, dataset))
        except JobReject as rej:
            out.rejected.append(Rejected(source_file=rej.source_file, source_index=0, reason=rej.reason,
                                         dataset=dataset, source_id=str(job.get("record_id", "")),
                                         detail={"job": job_dir.name, "protocol": job.get("protocol"),
                                                 "source_task": job.get("source_task")}))
            if state.state != "failed":
                jobs.mark_failed(job_dir, rej.reason)
        out.jobs.append(job_dir)
    return out


def collect_to_store(root: Path, store: Path, task: str = "bridge", dataset: str = "bridge",
                     shard: str | None = None) -> tuple[Collected, str | None]:
    """Collect ``root`` and write one new shard (records + quarantine) into ``store``.

    Returns (what was collected, shard name or None when nothing was ready). Collected jobs get a
    COLLECTED marker naming the shard, so a re-run adds only newly finished jobs."""
    from omni_data.safeio import safe_name
    from omni_data.store import write_shard

    found = collect(root, task, dataset)
    if not found.jobs:
        return found, None
    stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    name = shard or safe_name(f"{dataset}-{Path(root).resolve().name}-{stamp}")
    write_shard(Path(store), name, found.records, found.rejected)
    for job_dir in found.jobs:
        jobs.write_text_atomic(job_dir / COLLECTED, f"{name}\n")
    return found, name
