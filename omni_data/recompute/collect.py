"""Collect finished recompute jobs into the store as the bridge task.

For each job dir that is done (or failed) and not yet collected:

* VASP: the vasprun.xml must be closed (``</modeling>``), parse (once, with Omni's reader), be
  for the job's structure, be the level of theory the job's protocol asked for (``verify``:
  functional, +U, POTCARs, ENCUT, ISPIN, static/relax, PREC, EDIFF, k-points), hold at least one
  ionic step, have its final ionic step electronically converged (fewer SCF steps than NELM, the
  rule pymatgen and custodian use) and, for relaxations (IBRION 1-3, NSW > 0), stop before NSW.
  The final ionic step becomes the record.
* Local runners: ``results.json`` + ``results.npz`` with ``converged: true``, computed with the
  protocol's method at the charge/multiplicity the record implies.

Anything else becomes a ``Rejected`` with a ``"<kind>:<detail>"`` reason in the shard's
quarantine, and the job gets a FAILED marker so ``omni-data jobs --reemit-failed`` can redo it.
Each stored record carries its provenance as flat metadata (``PROVENANCE_KEYS``): source record,
task and dataset, protocol and the sha256 of its resolved YAML, code versions, job directory.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.recompute import jobs
from omni_data.recompute.molecules import is_molecule
from omni_data.record_checks import problem
from omni_data.schema import Record, Rejected

__all__ = [
    "Collected",
    "JobReject",
    "vasprun_verdict",
    "collect_job",
    "provenance",
    "collect",
    "collect_to_store",
    "provenance_groups",
    "record_provenance",
]

COLLECTED = "COLLECTED"
# bridge-record metadata that says where a label came from; ``export`` writes these into each
# frame's info / key-value pairs, ``omni-data jobs`` prints them
PROVENANCE_KEYS: tuple[str, ...] = (
    "source_id",
    "source_task",
    "source_dataset",
    "source_store",
    "protocol",
    "protocol_sha256",
    "engine",
    "code_version",
    "code_build",
    "input_writer",
    "omni_version",
    "job",
    "job_dir",
    "job_attempts",
    "spin_source",
    "warnings",
)
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
    """Parse ``path`` once with Omni's reader; returns (``VasprunScan`` or None, reason or None when usable).

    The scan's ``final`` attribute holds the final ionic step as a Record (or its Rejected)."""
    if not path.is_file():
        return None, f"missing:no vasprun.xml in {path.parent.name}"
    if not _closed(path):
        return None, "parse:truncated vasprun.xml (no closing </modeling>; VASP did not finish)"
    from omni_data.readers import ReadOptions
    from omni_data.readers.vasp import read_vasprun_final

    try:
        scan, final = read_vasprun_final(
            path, ReadOptions(dataset="bridge", task="bridge", options={"keep_unconverged": True})
        )
    except (OSError, ValueError) as exc:
        return None, f"parse:vasprun.xml unreadable ({type(exc).__name__}: {exc})"
    scan.final = final
    if scan.truncated:
        return scan, f"parse:truncated vasprun.xml ({scan.truncated})"
    if scan.damaged:
        return scan, f"parse:vasprun.xml damaged ({scan.damaged})"
    if final is None or scan.last is None:
        return scan, "parse:vasprun.xml has no ionic step"
    nelm = int(scan.setting("NELM") or 60)
    if scan.last.n_electronic >= nelm:
        return scan, f"unconverged:electronic (final ionic step used all NELM={nelm} SCF steps)"
    nsw = int(scan.setting("NSW") or 0)
    ibrion = int(scan.setting("IBRION") if scan.setting("IBRION") is not None else -1)
    if nsw > 0 and ibrion in RELAX_IBRION and scan.n_steps >= nsw:
        return scan, f"unconverged:ionic (relaxation reached NSW={nsw} steps)"
    if isinstance(final, Rejected):
        return scan, final.reason
    return scan, None


def _closed(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 256))
        return b"</modeling>" in fh.read()


def _expected_vasp(job: dict[str, Any], job_dir: Path) -> dict[str, Any]:
    """What the job's protocol asked for: job.json ``expected`` (written at emit), else rebuilt
    from the job's own INCAR/KPOINTS/POSCAR/POTCAR.spec (jobs emitted before that field existed)."""
    if job.get("expected"):
        return job["expected"]
    from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar

    from omni_data.recompute.verify import kspacing_divisions

    try:
        incar = dict(Incar.from_file(job_dir / "INCAR"))
        poscar = Poscar.from_file(job_dir / "POSCAR", check_for_potcar=False)
    except (OSError, ValueError) as exc:
        raise JobReject(f"missing:cannot tell what the protocol asked for ({exc})", str(job_dir / "INCAR")) from None
    cell = np.asarray(poscar.structure.lattice.matrix)
    kpoints = None
    if (job_dir / "KPOINTS").is_file():
        kp = Kpoints.from_file(job_dir / "KPOINTS")
        if kp.kpts and len(kp.kpts[0]) == 3 and not kp.num_kpts:
            kpoints = {"style": kp.style.name, "divisions": [int(x) for x in kp.kpts[0]]}
    elif "KSPACING" in incar:
        kpoints = {"style": "KSPACING", "divisions": kspacing_divisions(float(incar["KSPACING"]), cell)}
    if kpoints:
        kpoints["density"] = float(np.prod(kpoints["divisions"]) * abs(np.linalg.det(cell)))
    spec = job_dir / "POTCAR.spec"
    symbols = spec.read_text().split() if spec.is_file() else []
    return {
        "incar": incar,
        "kpoints": kpoints,
        "species": list(poscar.site_symbols),
        "potcar_symbols": symbols,
        "potcar_functional": "PBE",
    }


def _check_composition(symbols: list[str], source: Record, source_file: str) -> None:
    from ase.data import atomic_numbers

    numbers = sorted(atomic_numbers.get(s, -1) for s in symbols)
    if numbers != sorted(source.numbers.tolist()):
        raise JobReject("bad_value:output composition differs from the job's structure", source_file)


def _vasp_record(job: dict[str, Any], job_dir: Path, source: Record) -> tuple[Record, str]:
    """The verified final step of the job's vasprun.xml (one parse); ``JobReject`` otherwise.

    The level of theory is checked first: an output of another protocol is refused as such even
    when it is also unconverged (re-running it would not make it the right calculation)."""
    from omni_data.recompute.verify import check_vasp, reason

    path = job_dir / "vasprun.xml"
    scan, why = vasprun_verdict(path)
    if scan is not None and scan.header.symbols:
        _check_composition(scan.header.symbols, source, str(path))
    if scan is not None and scan.atomtypes:
        mismatches = check_vasp(_expected_vasp(job, job_dir), scan)
        if mismatches:
            raise JobReject(reason(mismatches), str(path))
    if why:
        raise JobReject(why, str(path))
    record = scan.final
    record.metadata["code_version"] = f"VASP {scan.generator.get('version', '?')}".strip()
    if scan.generator.get("subversion"):
        record.metadata["code_build"] = " ".join(scan.generator["subversion"].split())
    return record, str(path)


def _add_outcar_magmoms(record: Record, job_dir: Path) -> None:
    """vasprun.xml has no per-atom moments; take them from the OUTCAR's final step when it matches.

    Matching means same atomic numbers in the same order and positions within 1e-3 Å; the outcome
    is written to ``metadata["magmoms_source"]`` (``"OUTCAR"`` or why not)."""
    outcar = job_dir / "OUTCAR"
    if record.magmoms is not None or not outcar.is_file():
        return
    from omni_data.readers import ReaderError, ReadOptions, get_reader

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
    same = np.array_equal(last.numbers, record.numbers) and np.allclose(last.positions, record.positions, atol=1e-3)
    if not same:
        record.metadata["magmoms_source"] = "none: OUTCAR final step does not match vasprun.xml"
        return
    record.magmoms = np.asarray(last.magmoms, dtype=float)
    record.metadata["magmoms_source"] = "OUTCAR"


def _local_record(job: dict[str, Any], job_dir: Path, source: Record) -> Record:
    """The local runner's result, after checking it computed the protocol's method at the record's
    charge and multiplicity (``verify.check_local``)."""
    from omni_data.recompute.molecules import Refused
    from omni_data.recompute.runners.result import resolve_charge_spin
    from omni_data.recompute.verify import check_local, reason

    rpath = job_dir / "results.json"
    try:
        res = json.loads(rpath.read_text(encoding="utf-8"))
        arrays = np.load(job_dir / res.get("arrays", "results.npz"))
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        raise JobReject(f"parse:local results unreadable ({exc})", str(rpath)) from None
    try:
        want = resolve_charge_spin(source)
    except Refused as exc:
        raise JobReject(exc.reason, str(job_dir / jobs.RECORD_FILE)) from None
    mismatches = check_local(job, res, want.charge, want.multiplicity)
    if mismatches:
        raise JobReject(reason(mismatches), str(rpath))
    if not res.get("converged"):
        raise JobReject(f"unconverged:{res.get('method')} reported converged=false", str(rpath))
    versions = res.get("versions") or {}
    engine = str(job.get("engine") or "")
    meta = {
        "method": res.get("method"),
        "wall_time_s": res.get("wall_time_s"),
        "code_version": f"{engine} {versions.get(engine, '?')}",
        "spin_source": res.get("spin_source") or "",
        "warnings": "; ".join(res.get("warnings") or []),
    }
    if engine == "pyscf":
        info = res.get("info") or {}
        meta.update(xc=str(info.get("xc", "")), basis=str(info.get("basis", "")))
    return Record(
        numbers=arrays["numbers"],
        positions=arrays["positions"],
        cell=arrays["cell"] if "cell" in arrays.files else None,
        pbc=arrays["pbc"],
        energy=float(res["energy"]),
        energy_kind=res.get("energy_kind", "total"),
        forces=arrays["forces"],
        stress=arrays["stress"] if "stress" in arrays.files else None,
        charge=res.get("charge"),
        spin=res.get("multiplicity"),
        id="",
        dataset="bridge",
        task="bridge",
        metadata=meta,
    )


def collect_job(job_dir: Path, task: str = "bridge", dataset: str = "bridge") -> Record:
    """The bridge Record of one finished job; ``JobReject`` with the reason when unusable."""
    job = jobs.read_job(job_dir)
    state = jobs.job_state(job_dir)
    if state.state == "failed":
        raise JobReject(state.reason, str(job_dir / "FAILED"))
    source = jobs.read_record(job_dir)
    if job.get("engine") == "vasp":
        record, source_file = _vasp_record(job, job_dir, source)
        _add_outcar_magmoms(record, job_dir)
    else:
        record = _local_record(job, job_dir, source)
        source_file = str(job_dir / "results.json")
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
    record.metadata = {**record.metadata, **provenance(job, job_dir)}
    why = problem(record)
    if why:
        raise JobReject(why, source_file)
    return record.normalized()


def provenance(job: dict[str, Any], job_dir: Path) -> dict[str, Any]:
    """Flat provenance for a bridge record (JSON scalars): source record, task and dataset, protocol
    and the sha256 of its resolved YAML, code versions and the job directory."""
    from importlib.metadata import version

    from omni_data.recompute.protocols import ProtocolError, protocol_sha256

    sha = job.get("protocol_sha256")
    if not sha:  # a job emitted before hashes were recorded: hash the protocol as it is now
        try:
            sha = protocol_sha256(str(job.get("protocol")))
        except ProtocolError:
            sha = "unknown"
    out = {
        "source_id": job.get("record_id"),
        "source_task": job.get("source_task"),
        "source_dataset": job.get("dataset"),
        "source_store": job.get("store") or "",
        "protocol": job.get("protocol"),
        "protocol_sha256": sha,
        "engine": job.get("engine"),
        "job": Path(job_dir).name,
        "job_dir": str(Path(job_dir).resolve()),
        "omni_version": version("omni"),
        "input_writer": job.get("input_writer") or "",
        "job_attempts": len(job.get("history") or []) + 1,
    }
    return {k: v for k, v in out.items() if v is not None}


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
            out.rejected.append(
                Rejected(
                    source_file=rej.source_file,
                    source_index=0,
                    reason=rej.reason,
                    dataset=dataset,
                    source_id=str(job.get("record_id", "")),
                    detail={
                        "job": job_dir.name,
                        "protocol": job.get("protocol"),
                        "source_task": job.get("source_task"),
                    },
                )
            )
            if state.state != "failed":
                jobs.mark_failed(job_dir, rej.reason)
        out.jobs.append(job_dir)
    return out


def collect_to_store(
    root: Path, store: Path, task: str = "bridge", dataset: str = "bridge", shard: str | None = None
) -> tuple[Collected, str | None]:
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
    record_provenance(Path(store), name, found.records)
    for job_dir in found.jobs:
        jobs.write_text_atomic(job_dir / COLLECTED, f"{name}\n")
    return found, name


PROVENANCE_SECTION = "bridge_provenance"
"""Catalog section: for each collected shard, its records grouped by protocol, hash and code."""


def provenance_groups(records: list[Record]) -> list[dict[str, Any]]:
    """``records`` counted by (protocol, protocol_sha256, engine, code_version), largest first."""
    from collections import Counter

    keys = ("protocol", "protocol_sha256", "engine", "code_version")
    counts = Counter(tuple(str(r.metadata.get(k, "")) for k in keys) for r in records)
    return [{**dict(zip(keys, group)), "records": n} for group, n in counts.most_common()]


def record_provenance(store: Path, shard: str, records: list[Record]) -> None:
    """Add ``shard``'s provenance groups to the store catalog's ``bridge_provenance`` section, so
    ``omni-data info`` shows which protocols and codes labelled the bridge without reading records."""
    from omni_data.store.catalog import Catalog

    catalog = Catalog(store)
    section = dict(catalog.sections.get(PROVENANCE_SECTION) or {})
    section[shard] = provenance_groups(records)
    catalog.update_section(PROVENANCE_SECTION, section)
