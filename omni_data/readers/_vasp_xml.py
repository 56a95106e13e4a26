"""Streaming vasprun.xml parser (``xml.etree.ElementTree.iterparse``): one ``VaspStep`` per
``<calculation>``; each calculation (with its eigenvalues/DOS) is freed once read, so memory is
bounded by one ionic step.

Energies, and the VASP 5.x bug: in ``calculation/energy`` VASP 5.x writes a wrong
``e_0_energy`` (values like 0.0 or -0.16: ``e_wo_entrp`` and ``e_0_energy`` are swapped, VASP forum
thread 16942; pymatgen #2367/#2369, ASE MR 2685), while ``calculation/scstep/energy`` is right but
lacks the classical vdW correction (IVDW) that ``calculation/energy`` includes, and
``calculation/energy/e_fr_energy`` includes the PSTRESS·V term. So, like ASE, we take

* free energy (TOTEN) = ``calculation/energy/e_fr_energy`` − PSTRESS·V,
* energy(sigma→0)    = free + (``e_0_energy`` − ``e_fr_energy``) of the last scstep,
* energy w/o entropy = free + (``e_wo_entrp`` − ``e_fr_energy``) of the last scstep,

which is right for VASP 5 and 6 alike and never reads the broken field.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from omni_data.readers._vasp_outcar import VaspHeader, VaspStep
from omni_data.schema import symmetric_voigt
from omni_data.units import KBAR_EVA3, vasp_kbar_to_ase

ESSENTIALS = (
    "ENCUT",
    "ISPIN",
    "NELM",
    "GGA",
    "METAGGA",
    "LDAU",
    "LDAUU",
    "PSTRESS",
    "IBRION",
    "ISIF",
    "NSW",
    "IVDW",
    "ISMEAR",
    "SIGMA",
    "ALGO",
    "LREAL",
    "PREC",
)
STEP_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError, OverflowError)
_FREE = ("eigenvalues", "dos", "projected", "eigenvalues_kpoints_opt", "dielectricfunction")


class TruncatedXML(Exception):
    """vasprun.xml ends (or breaks) inside an ionic step; ``step_index`` is the incomplete step."""

    def __init__(self, step_index: int | None, message: str) -> None:
        super().__init__(message)
        self.step_index = step_index


def _param(el: ET.Element) -> Any:
    text = (el.text or "").strip()
    kind = el.get("type", "float")
    conv = {"int": int, "logical": lambda t: t.strip().upper().startswith("T"), "string": str}.get(kind, float)
    try:
        if el.tag == "v":
            return [conv(t) for t in text.split()]
        return conv(text)
    except ValueError:
        return text  # VASP writes '*****' on overflow: keep the text, never a made-up number


def _varray(el: ET.Element | None) -> np.ndarray | None:
    if el is None:
        return None
    rows = [(v.text or "").split() for v in el.findall("v")]
    return np.array(rows, dtype=np.float64)


def _energies(calc: ET.Element, volume: float, pstress: float) -> dict[str, float]:
    final = {i.get("name"): float(i.text) for i in calc.findall("energy/i")}
    if "e_fr_energy" not in final:
        return {}
    free = final["e_fr_energy"] - pstress * KBAR_EVA3 * volume
    out = {"free_energy": free}
    scsteps = calc.findall("scstep/energy")
    if scsteps:
        last = {i.get("name"): float(i.text) for i in scsteps[-1].findall("i")}
        out["energy_sigma0"] = free + last["e_0_energy"] - last["e_fr_energy"]
        out["energy_wo_entrp"] = free + last["e_wo_entrp"] - last["e_fr_energy"]
    return out


def _step(calc: ET.Element, index: int, header: VaspHeader) -> VaspStep:
    basis = _varray(calc.find("structure/crystal/varray[@name='basis']"))
    frac = _varray(calc.find("structure/varray[@name='positions']"))
    step = VaspStep(index=index, complete=True)
    step.n_electronic = len(calc.findall("scstep"))
    if basis is not None and frac is not None:
        step.cell = basis
        step.positions = frac @ basis
    forces = _varray(calc.find("varray[@name='forces']"))
    step.forces = forces
    stress = _varray(calc.find("varray[@name='stress']"))
    if stress is not None:
        # VASP's tensor is symmetric up to its print rounding: keep the symmetric part, as every reader does
        step.stress = vasp_kbar_to_ase(symmetric_voigt(stress.reshape(3, 3))[0])
    volume = abs(float(np.linalg.det(basis))) if basis is not None else 0.0
    e = _energies(calc, volume, float(header.params.get("PSTRESS", 0.0) or 0.0))
    step.free_energy = e.get("free_energy")
    step.energy_sigma0 = e.get("energy_sigma0")
    step.energy_wo_entrp = e.get("energy_wo_entrp")
    return step


def iter_vasprun(fh: IO[bytes], scan: VasprunScan | None = None) -> Iterator[VaspHeader | VaspStep]:
    """Yield the header (before the first step), then one complete ``VaspStep`` per calculation.

    ``scan``: when given, also filled with the run's full settings (generator, every INCAR tag and
    ``<parameters>`` entry, atom types, k-points, reciprocal basis) as they are parsed.
    Raises ``TruncatedXML`` after the last complete step when the file breaks off."""
    header = VaspHeader() if scan is None else scan.header
    incar: dict[str, Any] = {}
    header_sent = False
    in_calc = False
    index = 0
    fixed: list[bool] = []
    try:
        for event, el in ET.iterparse(fh, events=("start", "end")):
            if event == "start":
                if el.tag == "calculation":
                    in_calc = True
                    if not header_sent:
                        header.params.update({k: v for k, v in incar.items() if k in ESSENTIALS})
                        header.params.setdefault("LDAU", False)
                        header.fixed = fixed
                        header_sent = True
                        yield header
                continue
            tag = el.tag
            if tag == "i" and el.get("name") == "version" and not header.version:
                header.version = (el.text or "").strip()
            elif tag == "generator" and scan is not None:
                scan.generator = {i.get("name"): (i.text or "").strip() for i in el.findall("i")}
            elif tag == "incar":
                incar = {i.get("name"): _param(i) for i in el if i.tag in ("i", "v")}
                if scan is not None:
                    scan.incar = incar
            elif tag == "kpoints" and scan is not None and not in_calc and not scan.kpoints:
                scan.kpoints = _kpoints(el)
            elif tag == "parameters":
                for p in el.iter():  # first occurrence wins: NELM also appears in later sections
                    name = p.get("name")
                    if p.tag not in ("i", "v") or not name:
                        continue
                    if scan is not None:
                        scan.parameters.setdefault(name, _param(p))
                    if name in ESSENTIALS:
                        header.params.setdefault(name, _param(p))
                    elif p.tag == "i" and name == "ENMAX":  # <parameters> spells ENCUT "ENMAX"
                        header.params.setdefault("ENCUT", _param(p))
                el.clear()
            elif tag == "atominfo":
                header.symbols = [rc.find("c").text.strip() for rc in el.findall("array[@name='atoms']/set/rc")]
                if scan is not None:
                    scan.atomtypes = _atomtypes(el)
            elif tag == "structure" and el.get("name") == "initialpos":
                if scan is not None:
                    scan.rec_basis = _varray(el.find("crystal/varray[@name='rec_basis']"))
                sel = el.findall("varray[@name='selective']/v")
                fixed = [v.text.split() == ["F", "F", "F"] for v in sel]
                header.partially_fixed = any(v.text.split() != ["F", "F", "F"] and "F" in v.text.split() for v in sel)
            elif tag in _FREE and in_calc:
                el.clear()
            elif tag == "calculation":
                in_calc = False
                try:
                    step = _step(el, index, header)
                except STEP_ERRORS as exc:  # damaged numbers or shapes: this step is rejected
                    step = VaspStep(index=index, complete=True, error=f"{type(exc).__name__}: {exc}")
                yield step
                index += 1
                el.clear()
    except ET.ParseError as exc:
        if in_calc:
            raise TruncatedXML(index, f"file ends inside ionic step {index} ({exc})") from None
        raise TruncatedXML(None, f"file ends after {index} complete ionic steps ({exc})") from None
    except LookupError as exc:  # e.g. an unknown encoding in the XML declaration
        raise ValueError(f"unreadable XML declaration ({exc})") from None
    except (AttributeError, TypeError, IndexError) as exc:  # damaged atominfo / initial structure
        raise ValueError(f"damaged vasprun.xml header ({type(exc).__name__}: {exc})") from None
    if not header_sent:
        header.params.update({k: v for k, v in incar.items() if k in ESSENTIALS})
        header.fixed = fixed
        yield header


# --- one-pass scan for recompute collection: run settings + the final ionic step -------------------


class VasprunScan:
    """What one pass over a vasprun.xml found: the run's settings and its final complete step.

    ``generator``: program/version/subversion/platform; ``incar``: every tag of ``<incar>`` (what
    the user set); ``parameters``: every ``<parameters>`` entry, first occurrence wins (what VASP
    ran with, defaults included; ENCUT is spelled ENMAX there); ``atomtypes``: one
    ``(element, count, pseudopotential title)`` per POTCAR; ``kpoints``: generation style,
    ``divisions`` and the number of irreducible k-points; ``rec_basis``: reciprocal lattice of the
    initial structure (1/Å, no 2π). ``header``/``last`` are what ``iter_vasprun`` would give for the
    final complete step. ``truncated`` is the parse error when the file breaks off."""

    def __init__(self) -> None:
        self.generator: dict[str, str] = {}
        self.incar: dict[str, Any] = {}
        self.parameters: dict[str, Any] = {}
        self.atomtypes: list[tuple[str, int, str]] = []
        self.kpoints: dict[str, Any] = {}
        self.rec_basis: np.ndarray | None = None
        self.header = VaspHeader()
        self.last: VaspStep | None = None
        self.n_steps = 0
        self.truncated: str | None = None
        self.damaged: str | None = None  # a step whose numbers could not be read (then ``last`` is None)

    def setting(self, name: str) -> Any:
        """The value VASP ran with: the INCAR tag if set there, else its ``<parameters>`` value."""
        if name in self.incar:
            return self.incar[name]
        if name == "ENCUT" and "ENMAX" in self.parameters:
            return self.parameters["ENMAX"]
        return self.parameters.get(name)


def _atomtypes(el: ET.Element) -> list[tuple[str, int, str]]:
    out = []
    for rc in el.findall("array[@name='atomtypes']/set/rc"):
        cells = [(c.text or "").strip() for c in rc.findall("c")]
        if len(cells) >= 5:
            out.append((cells[1], int(cells[0]), cells[4]))
    return out


def _kpoints(el: ET.Element) -> dict[str, Any]:
    gen = el.find("generation")
    out: dict[str, Any] = {"style": None if gen is None else gen.get("param")}
    if gen is not None:
        div = gen.find("v[@name='divisions']")
        if div is not None:
            out["divisions"] = [int(x) for x in (div.text or "").split()]
        length = gen.find("i[@name='subdivisionlength']")
        if length is not None:
            out["subdivisionlength"] = float(length.text)
    out["n_irreducible"] = len(el.findall("varray[@name='kpointlist']/v"))
    return out


def scan_vasprun(fh: IO[bytes]) -> VasprunScan:
    """Parse a vasprun.xml once (``iter_vasprun``): settings, atom types, k-points and the final
    complete ionic step. Memory is bounded by one ionic step. A file that breaks off sets
    ``truncated`` (the steps before the break are kept) instead of raising."""
    scan = VasprunScan()
    try:
        for item in iter_vasprun(fh, scan):
            if not isinstance(item, VaspStep):
                continue
            if item.error:  # damaged numbers or shapes in this step
                scan.last, scan.damaged = None, f"ionic step {item.index}: {item.error}"
            else:
                scan.last = item
            scan.n_steps += 1
    except TruncatedXML as exc:
        scan.truncated = str(exc)
    return scan
