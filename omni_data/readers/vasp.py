"""VASP reader: vasprun.xml and OUTCAR (plain or .gz/.xz), one record per ionic step.

Both are streamed (``_vasp_xml`` with iterparse, ``_vasp_outcar`` by lines), so memory is bounded
by one ionic step. Units are fixed by the format (eV, Å, eV/Å; stress kBar compression-positive
is turned into eV/Å³ ASE sign), so manifest units are not applied.

``opts.energy_key`` picks the energy: ``energy`` (default; energy(sigma→0), kind ``total``),
``free_energy`` (TOTEN, kind ``free``) or ``e_wo_entrp`` (energy without entropy, kind
``total``); all three are kept in ``metadata["energies"]``. vasprun energies are computed so that
VASP 5.x's wrong ``e_0_energy`` is never read (see ``_vasp_xml``).

Failures: a step cut off by the end of the file is ``Rejected("parse:truncated ...")`` after the
complete steps; a file with no ionic step at all is a ``ReaderError``. A step whose SCF loop hit
NELM is flagged ``metadata["converged_electronic"] = False`` and, unless
``opts.options["keep_unconverged"]``, rejected as ``"unconverged:electronic ..."``.

``opts.options["job_json"]`` (bridge job folders written by ``omni-data emit-jobs``): the
``job.json`` beside the file links every step to the record it recomputes
(``metadata["source_id"]``, ``["source_task"]``, ``["protocol"]``, as ``collect-bridge`` sets them);
a folder without one is a ``ReaderError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from omni_data.readers import Partition, ReaderError, ReadOptions, frame_ranges
from omni_data.readers._common import open_binary, source_label
from omni_data.readers._vasp_outcar import VaspHeader, VaspStep, iter_outcar, step_offsets
from omni_data.readers._vasp_xml import TruncatedXML, iter_vasprun
from omni_data.record_checks import problem
from omni_data.schema import Record, Rejected

__all__ = ["count_steps", "partitions", "read", "read_vasprun_final"]

ENERGY_CHOICES: dict[str, tuple[str, str]] = {
    "energy": ("energy_sigma0", "total"),
    "e_0_energy": ("energy_sigma0", "total"),
    "free_energy": ("free_energy", "free"),
    "e_fr_energy": ("free_energy", "free"),
    "e_wo_entrp": ("energy_wo_entrp", "total"),
}
_SOURCE_TEXT = {
    ("vasprun", "energy_sigma0"): "vasprun.xml e_fr_energy - PSTRESS*V + (e_0_energy - e_fr_energy) of the last scstep",
    ("vasprun", "free_energy"): "vasprun.xml calculation/energy e_fr_energy - PSTRESS*V",
    (
        "vasprun",
        "energy_wo_entrp",
    ): "vasprun.xml e_fr_energy - PSTRESS*V + (e_wo_entrp - e_fr_energy) of the last scstep",
    ("outcar", "energy_sigma0"): "OUTCAR energy(sigma->0)",
    ("outcar", "free_energy"): "OUTCAR free  energy   TOTEN",
    ("outcar", "energy_wo_entrp"): "OUTCAR energy  without entropy",
}


def _is_xml(path: str | Path) -> bool:
    with open_binary(path) as fh:
        head = fh.read(256).lstrip()
    return head.startswith(b"<?xml") or head.startswith(b"<modeling")


def count_steps(path: str | Path) -> int:
    """Ionic steps started in the file (complete or not), by a cheap line scan."""
    if not _is_xml(path):
        with open_binary(path) as fh:
            return len(step_offsets(fh)[0])
    with open_binary(path) as fh:
        return sum(line.count(b"<calculation>") for line in fh)


def partitions(path: Path, target: int) -> list[Partition]:
    """Ranges of ionic steps; ReaderError when the file holds no ionic step at all.

    OUTCAR partitions carry the byte offset of their first step, so a reader parses the header and
    then seeks; vasprun.xml partitions parse from the top (XML cannot be entered mid-file)."""
    if not Path(path).is_file():
        raise ReaderError(f"{path}: no such VASP output file")
    offsets: list[int] | None = None
    if _is_xml(path):
        n = count_steps(path)
    else:
        with open_binary(path) as fh:
            offsets, _ = step_offsets(fh)
        n = len(offsets)
    if n == 0:
        raise ReaderError(f"{path}: no ionic step found (job died before the first step, or not a VASP output)")
    return [
        Partition(str(path), a, b, (("offset", offsets[a]),) if offsets is not None and a > 0 else ())
        for a, b in frame_ranges(n, target)
    ]


def _outcar_items(fh: IO[bytes], part: Partition) -> Iterator[VaspHeader | VaspStep]:
    """OUTCAR items for ``part``: the header, then steps from the partition's byte offset if it has one."""
    offset = part.get("offset")
    if offset is None:
        yield from iter_outcar(fh)
        return
    header = next((h for h in iter_outcar(fh) if isinstance(h, VaspHeader)), None)
    if header is None:
        raise ValueError("no VASP header before the first ionic step")
    yield header
    fh.seek(int(offset))
    yield from iter_outcar(fh, resume=(header, part.start))


def read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]:
    """Records of ionic steps ``part.start`` .. ``part.stop``."""
    if opts.energy_key not in ENERGY_CHOICES:
        raise ValueError(f"vasp reader: energy_key {opts.energy_key!r} not one of {sorted(ENERGY_CHOICES)}")
    label = source_label(part.path, opts)
    fmt = "vasprun" if _is_xml(part.path) else "outcar"
    stop = part.stop if part.stop is not None else 1 << 62
    header: VaspHeader | None = None
    link = _job_link(part.path) if opts.options.get("job_json") else None
    seen = 0
    with open_binary(part.path) as fh:
        items = iter_vasprun(fh) if fmt == "vasprun" else _outcar_items(fh, part)
        try:
            for item in items:
                if isinstance(item, VaspHeader):
                    header = item
                    continue
                seen += 1
                if item.index >= stop:
                    break
                if item.index >= part.start and header is not None:
                    out = _to_item(item, header, fmt, label, part.path, opts)
                    if link is not None and isinstance(out, Record):
                        out.metadata.update(link)
                    yield out
        except TruncatedXML as exc:
            if seen == 0:
                raise ReaderError(f"{part.path}: unreadable vasprun.xml, no complete ionic step ({exc})") from None
            if exc.step_index is not None and part.start <= exc.step_index < stop:
                yield _reject(part.path, exc.step_index, label, opts, f"parse:truncated vasprun.xml: {exc}")
        except (ValueError, EOFError) as exc:
            raise ReaderError(f"{part.path}: cannot parse as {fmt} ({exc})") from exc
    if header is None:
        raise ReaderError(f"{part.path}: no VASP header found; not a {fmt} file")


def _job_link(path: str) -> dict[str, str]:
    """``source_id``/``source_task``/``protocol`` from the emit-jobs ``job.json`` beside ``path``."""
    import json

    job = Path(path).parent / "job.json"
    try:
        data = json.loads(job.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReaderError(
            f"{path}: reader option job_json is set but {job.name} is missing beside it "
            "(omni-data emit-jobs writes one per job folder)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ReaderError(f"{job}: unreadable job file ({exc})") from exc
    if not isinstance(data, dict) or not data.get("record_id"):
        raise ReaderError(f"{job}: no record_id, so the result cannot be linked to its source record")
    link = {"source_id": str(data["record_id"])}
    for key in ("source_task", "protocol"):
        if isinstance(data.get(key), str):
            link[key] = data[key]
    return link


def _reject(
    path: str, index: int, label: str, opts: ReadOptions, reason: str, detail: dict[str, Any] | None = None
) -> Rejected:
    return Rejected(path, index, reason, opts.dataset, f"{label}:{index}", detail or {})


def _to_item(
    step: VaspStep, header: VaspHeader, fmt: str, label: str, path: str, opts: ReadOptions
) -> Record | Rejected:
    where = f"ionic step {step.index}"
    if step.error is not None:
        return _reject(path, step.index, label, opts, f"parse:damaged {fmt} {where}: {step.error}")
    if not step.complete:
        return _reject(
            path,
            step.index,
            label,
            opts,
            f"parse:truncated {fmt}: {where} incomplete at end of file",
            {"line": step.line, "n_electronic": step.n_electronic},
        )
    if step.positions is None or step.cell is None:
        return _reject(
            path,
            step.index,
            label,
            opts,
            f"missing:positions not printed for {where} (NWRITE={header.params.get('NWRITE')})",
        )
    n = len(step.positions)
    if len(header.symbols) != n:
        return _reject(
            path, step.index, label, opts, f"bad_shape:{len(header.symbols)} species for {n} positions in {where}"
        )
    attr, kind = ENERGY_CHOICES[opts.energy_key]
    energy = getattr(step, attr)
    if energy is None:
        return _reject(path, step.index, label, opts, f"missing:energy ({attr}) in {where}")
    from ase.data import atomic_numbers

    nelm = header.params.get("NELM")
    converged = None if not isinstance(nelm, int) else step.n_electronic < nelm
    essentials = dict(header.params)
    meta: dict[str, Any] = {
        "format": fmt,
        "vasp_version": header.version,
        "incar": essentials,
        "ionic_step": step.index,
        "n_electronic_steps": step.n_electronic,
        "converged_electronic": converged,
        "energy_source_key": _SOURCE_TEXT[(fmt, attr)],
        "energies": {
            "free_energy": step.free_energy,
            "energy_sigma0": step.energy_sigma0,
            "energy_wo_entrp": step.energy_wo_entrp,
        },
    }
    if step.notes:
        meta["notes"] = list(step.notes)
    if header.partially_fixed:
        meta["partially_fixed_atoms"] = True  # selective dynamics fixing only some axes: not in `fixed`
    fixed_list = header.fixed
    unknown = sorted(set(header.symbols) - set(atomic_numbers))
    if unknown:
        return _reject(path, step.index, label, opts, f"bad_value:unknown element {unknown[0]!r} in POTCAR/atominfo")
    rec = Record(
        numbers=np.array([atomic_numbers[s] for s in header.symbols], dtype=np.int64),
        positions=step.positions,
        id=opts.make_id(f"{label}:{step.index}"),
        dataset=opts.dataset,
        task=opts.task,
        cell=step.cell,
        pbc=np.ones(3, dtype=bool),
        energy=float(energy),
        energy_kind=kind if kind == "free" else opts.energy_kind,
        forces=step.forces,
        stress=step.stress,
        magmoms=step.magmoms if step.magmoms is not None and len(step.magmoms) == n else None,
        fixed=np.array(fixed_list, dtype=bool) if len(fixed_list) == n else None,
        source_file=path,
        source_index=step.index,
        metadata=meta,
    )
    try:
        reason = problem(rec)
        if reason is None:
            rec.normalized()
    except (ValueError, TypeError) as exc:
        reason = f"bad_shape:{exc}"
    if reason is not None:
        return _reject(path, step.index, label, opts, f"{reason} in {where}")
    if converged is False and not opts.options.get("keep_unconverged", False):
        return _reject(
            path,
            step.index,
            label,
            opts,
            f"unconverged:electronic ({step.n_electronic} SCF steps reached NELM={nelm}) in {where}",
            {"n_electronic": step.n_electronic, "NELM": nelm},
        )
    return rec


def read_vasprun_final(path: str | Path, opts: ReadOptions) -> tuple[Any, Record | Rejected | None]:
    """One pass over a vasprun.xml: its settings (``_vasp_xml.VasprunScan``) and its final step.

    The final complete ionic step goes through the same conversion and checks as ``read`` (so an
    unconverged final SCF is a ``Rejected`` unless ``keep_unconverged``); it is None when the file
    holds no complete step. ``recompute.collect`` uses this so a job's output is parsed once."""
    from omni_data.readers._vasp_xml import scan_vasprun

    label = source_label(str(path), opts)
    with open_binary(path) as fh:
        scan = scan_vasprun(fh)
    if scan.last is None:
        return scan, None
    return scan, _to_item(scan.last, scan.header, "vasprun", label, str(path), opts)
