"""Did a finished job compute what its protocol asked for? (the level-of-theory check of collect)

At emit time ``expected_vasp`` records, in job.json, what the protocol's pymatgen input set wrote
(INCAR, k-point grid and its density, POTCAR symbols). At collect time ``check_vasp`` compares
those with what the vasprun.xml says VASP ran with (``<incar>`` over ``<parameters>``, so a tag left
to its VASP default is compared at that default), and ``check_local`` compares the local runner's
results.json with the protocol and the charge/multiplicity the record implies. Each difference is a
``Mismatch`` naming the parameter and both values; tolerances live in ``protocols``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from omni_data.recompute import protocols as P

__all__ = [
    "Mismatch",
    "reason",
    "expected_vasp",
    "kspacing_divisions",
    "calc_kind",
    "check_vasp",
    "output_kpoint_density",
    "check_local",
]

# the GGA tag's values and what a POTCAR title implies when GGA is not set (VASP uses LEXCH)
_POTCAR_FAMILY = {"PAW_PBE": "PE", "PAW_GGA": "91", "PAW_LDA": "CA", "PAW": "CA", "US": "CA"}
_PMG_FUNCTIONAL = {
    "PBE": "PE",
    "PBE_52": "PE",
    "PBE_54": "PE",
    "PBE_64": "PE",
    "PBE_52_W_HASH": "PE",
    "PBE_54_W_HASH": "PE",
    "PW91": "91",
    "LDA": "CA",
    "LDA_52": "CA",
    "LDA_54": "CA",
    "LDA_64": "CA",
}
_PREC = {"A": "Accurate", "N": "Normal", "H": "High", "L": "Low", "M": "Medium", "S": "Single"}
RELAX_IBRION = (1, 2, 3)


@dataclass(frozen=True)
class Mismatch:
    """One parameter the output computed differently from the protocol."""

    param: str
    output: Any
    expected: Any
    note: str = ""

    def text(self) -> str:
        out = f"{self.param} {_show(self.output)} != {_show(self.expected)}"
        return f"{out} ({self.note})" if self.note else out


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def reason(mismatches: list[Mismatch]) -> str:
    """``protocol_mismatch:<first>; <second>; ...`` (every difference, most fundamental first)."""
    return "protocol_mismatch:" + "; ".join(m.text() for m in mismatches)


# --- what the protocol asked for (recorded at emit) -----------------------------------------------


def expected_vasp(vis: Any, cell: np.ndarray) -> dict[str, Any]:
    """JSON-ready expectations from a pymatgen input set for a structure with lattice ``cell`` (Å)."""
    incar = {str(k): _plain(v) for k, v in dict(vis.incar).items()}
    kpoints = None
    kp = vis.kpoints
    if kp is not None and kp.kpts and len(kp.kpts[0]) == 3 and getattr(kp, "num_kpts", 0) == 0:
        divisions = [int(x) for x in kp.kpts[0]]
        kpoints = {"style": str(kp.style.name), "divisions": divisions}
    elif "KSPACING" in incar:
        divisions = kspacing_divisions(float(incar["KSPACING"]), cell)
        kpoints = {"style": "KSPACING", "divisions": divisions}
    if kpoints is not None:
        kpoints["density"] = float(np.prod(kpoints["divisions"]) * abs(np.linalg.det(cell)))
    return {
        "incar": incar,
        "kpoints": kpoints,
        "species": list(vis.poscar.site_symbols),
        "potcar_symbols": list(vis.potcar_symbols),
        "potcar_functional": str(vis.potcar_functional),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


def kspacing_divisions(kspacing: float, cell: np.ndarray) -> list[int]:
    """VASP's grid for KSPACING: N_i = max(1, ceil(|b_i| 2π / KSPACING)), b_i without 2π."""
    rec = np.linalg.inv(np.asarray(cell, dtype=float)).T
    return [max(1, math.ceil(float(np.linalg.norm(b)) * 2 * math.pi / kspacing)) for b in rec]


# --- normalisation of VASP values -----------------------------------------------------------------


def _tag(value: Any) -> str | None:
    """A string tag upper-cased; VASP's '--', empty and NONE mean unset."""
    if value is None:
        return None
    text = str(value).strip().upper()
    return None if text in ("", "--", "NONE", "FALSE", "F") else text


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().upper().startswith(("T", ".T"))
    return bool(value)


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _float(value: Any, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def calc_kind(nsw: int, ibrion: int) -> str:
    """static / relaxation / MD / IBRION n, as VASP interprets NSW and IBRION."""
    if nsw <= 0 or ibrion == -1:
        return "static"
    if ibrion in RELAX_IBRION:
        return "relaxation"
    if ibrion == 0:
        return "MD"
    return f"IBRION {ibrion} run"


def _functional(metagga: Any, gga: Any, fallback: str) -> tuple[str | None, str]:
    return _tag(metagga), (_tag(gga) or fallback)


def _describe(meta: str | None, gga: str) -> str:
    return f"METAGGA {meta}" if meta else f"GGA {gga}"


def _potcar_symbol(title: str) -> str:
    parts = title.split()
    return parts[1] if len(parts) > 1 else title


def _u_by_element(elements: list[str], ldau: bool, values: Any) -> dict[str, float]:
    vals = list(values) if isinstance(values, (list, tuple)) else ([] if values is None else [values])
    out: dict[str, float] = {}
    for i, el in enumerate(elements):
        u = _float(vals[i], 0.0) if ldau and i < len(vals) else 0.0
        out.setdefault(el, u)
    return out


# --- VASP -----------------------------------------------------------------------------------------


def check_vasp(expected: dict[str, Any], scan: Any) -> list[Mismatch]:
    """Every difference between ``expected`` (from ``expected_vasp``) and a ``VasprunScan``."""
    inc = expected.get("incar", {})
    out: list[Mismatch] = []
    elements = [t[0] for t in scan.atomtypes]
    titles = [t[2] for t in scan.atomtypes]
    family = _POTCAR_FAMILY.get(titles[0].split()[0], "PE") if titles else "PE"
    o_meta, o_gga = _functional(scan.setting("METAGGA"), scan.setting("GGA"), family)
    e_meta, e_gga = _functional(
        inc.get("METAGGA"),
        inc.get("GGA"),
        _PMG_FUNCTIONAL.get(str(expected.get("potcar_functional", "PBE")).upper(), "PE"),
    )
    if o_meta != e_meta:
        if e_meta is None:
            out.append(Mismatch("METAGGA", o_meta, "protocol", f"none: {_describe(e_meta, e_gga)}"))
        elif o_meta is None:
            out.append(Mismatch("METAGGA", f"none ({_describe(o_meta, o_gga)})", e_meta))
        else:
            out.append(Mismatch("METAGGA", o_meta, e_meta))
    elif o_meta is None and o_gga != e_gga:
        out.append(Mismatch("GGA", o_gga, e_gga))
    for tag in ("LHFCALC",):
        o, e = _bool(scan.setting(tag)), _bool(inc.get(tag, P.VASP_DEFAULTS[tag]))
        if o != e:
            out.append(Mismatch(tag, o, e, "hybrid functional" if o else "protocol asks for a hybrid"))
    o_vdw, e_vdw = _int(scan.setting("IVDW"), 0), _int(inc.get("IVDW"), 0)
    if o_vdw != e_vdw:
        out.append(Mismatch("IVDW", o_vdw, e_vdw, "dispersion correction differs"))
    out += _check_potcars(expected, elements, titles)
    out += _check_u(expected, inc, elements, scan)
    out += _check_numbers(inc, scan)
    out += _check_kpoints(expected, scan)
    return out


def _check_potcars(expected: dict[str, Any], elements: list[str], titles: list[str]) -> list[Mismatch]:
    want = dict(zip(expected.get("species", []), expected.get("potcar_symbols", [])))
    out = []
    for el, title in zip(elements, titles):
        got = _potcar_symbol(title)
        if el in want and got != want[el]:
            out.append(Mismatch(f"POTCAR {el}", got, want[el]))
    return out


def _check_u(expected: dict[str, Any], inc: dict[str, Any], elements: list[str], scan: Any) -> list[Mismatch]:
    o_ldau, e_ldau = _bool(scan.setting("LDAU")), _bool(inc.get("LDAU", False))
    o_u = _u_by_element(elements, o_ldau, scan.setting("LDAUU"))
    e_u = _u_by_element(list(expected.get("species", [])), e_ldau, inc.get("LDAUU"))
    if any(o_u.values()) != any(e_u.values()):
        return [
            Mismatch(
                "LDAU",
                any(o_u.values()),
                any(e_u.values()),
                "+U on where the protocol has none" if any(o_u.values()) else "no +U where the protocol has it",
            )
        ]
    return [
        Mismatch(f"LDAUU {el}", o_u[el], e_u.get(el, 0.0)) for el in o_u if abs(o_u[el] - e_u.get(el, 0.0)) > P.U_TOL_EV
    ]


def _check_numbers(inc: dict[str, Any], scan: Any) -> list[Mismatch]:
    out = []
    if "ENCUT" in inc:
        o, e = _float(scan.setting("ENCUT"), float("nan")), float(inc["ENCUT"])
        if not abs(o - e) <= P.ENCUT_TOL_EV:
            out.append(Mismatch("ENCUT", o, e))
    o_spin, e_spin = _int(scan.setting("ISPIN"), 1), _int(inc.get("ISPIN"), 1)
    if o_spin != e_spin:
        out.append(Mismatch("ISPIN", o_spin, e_spin))
    if "NUPDOWN" in inc:  # a fixed spin state (boxed molecules with a known multiplicity)
        o_nup, e_nup = _float(scan.setting("NUPDOWN"), -1.0), float(inc["NUPDOWN"])
        if abs(o_nup - e_nup) > 1e-6:
            out.append(Mismatch("NUPDOWN", o_nup, e_nup, "another spin state"))
    o_nsw, e_nsw = _int(scan.setting("NSW"), 0), _int(inc.get("NSW"), 0)
    o_ib = _int(scan.setting("IBRION"), -1 if o_nsw <= 1 else 0)
    e_ib = _int(inc.get("IBRION"), -1 if e_nsw <= 1 else 0)
    o_kind, e_kind = calc_kind(o_nsw, o_ib), calc_kind(e_nsw, e_ib)
    if o_kind != e_kind:
        note = f"{o_kind} where a {e_kind} was asked for"
        out.append(Mismatch("NSW", o_nsw, e_nsw, note) if o_nsw != e_nsw else Mismatch("IBRION", o_ib, e_ib, note))
    o_prec = str(scan.setting("PREC") or P.VASP_DEFAULTS["PREC"]).strip()[:1].upper()
    e_prec = str(inc.get("PREC", P.VASP_DEFAULTS["PREC"])).strip()[:1].upper()
    if o_prec != e_prec:
        out.append(Mismatch("PREC", _PREC.get(o_prec, o_prec), _PREC.get(e_prec, e_prec)))
    o_ed, e_ed = _float(scan.setting("EDIFF"), 1e-4), _float(inc.get("EDIFF"), 1e-4)
    if o_ed > e_ed * (1 + P.EDIFF_REL_TOL):
        out.append(Mismatch("EDIFF", o_ed, e_ed, "looser SCF convergence than the protocol"))
    return out


def output_kpoint_density(scan: Any) -> float | None:
    """k-points per Å⁻³ (no 2π) of the output's grid, from its divisions or its KSPACING."""
    if scan.rec_basis is None:
        return None
    divisions = scan.kpoints.get("divisions")
    if not divisions and scan.setting("KSPACING") is not None and "KSPACING" in scan.incar:
        divisions = kspacing_divisions(float(scan.setting("KSPACING")), np.linalg.inv(scan.rec_basis).T)
    if not divisions:
        return None
    return float(np.prod(divisions) / abs(np.linalg.det(scan.rec_basis)))


def _check_kpoints(expected: dict[str, Any], scan: Any) -> list[Mismatch]:
    want = expected.get("kpoints")
    if not want or not want.get("density"):
        return []
    got = output_kpoint_density(scan)
    o_div = scan.kpoints.get("divisions")
    if got is None:
        return [
            Mismatch("KPOINTS", "unknown grid", "x".join(map(str, want["divisions"])), "output has no k-point grid")
        ]
    if list(want["divisions"]) == [1, 1, 1]:  # Γ only (a boxed molecule): any box, but Γ only
        if o_div and list(o_div) != [1, 1, 1]:
            return [Mismatch("KPOINTS", "x".join(map(str, o_div)), "1x1x1", "protocol asks for Γ only")]
        return []
    if got < (1 - P.KPOINT_DENSITY_REL_TOL) * want["density"]:
        o_text = "x".join(map(str, o_div)) if o_div else "KSPACING grid"
        return [
            Mismatch(
                "KPOINTS",
                f"{o_text} ({got:.1f}/Å⁻³)",
                f"{'x'.join(map(str, want['divisions']))} ({want['density']:.1f}/Å⁻³)",
                "sparser k-point grid than the protocol",
            )
        ]
    return []


# --- local engines --------------------------------------------------------------------------------


def check_local(job: dict[str, Any], res: dict[str, Any], charge: float, multiplicity: int) -> list[Mismatch]:
    """results.json against the job's protocol (method, xc/basis for PySCF) and the record's charge/spin."""
    spec = job.get("protocol_spec") or {}
    method = spec.get("method") or {}
    out: list[Mismatch] = []
    want_name = str(method.get("name") or job.get("method") or "")
    if str(res.get("method") or "").lower() != want_name.lower():
        out.append(Mismatch("method", res.get("method"), want_name))
    if job.get("engine") == "pyscf":
        info, opts = res.get("info") or {}, method.get("options") or {}
        for key in ("xc", "basis"):
            if key in opts and str(info.get(key, "")).lower() != str(opts[key]).lower():
                out.append(Mismatch(key, info.get(key), opts[key]))
    got_q = res.get("charge")
    if got_q is None or abs(float(got_q) - charge) > P.CHARGE_TOL:
        out.append(Mismatch("charge", got_q, charge))
    if res.get("multiplicity") is None or int(res["multiplicity"]) != int(multiplicity):
        out.append(Mismatch("multiplicity", res.get("multiplicity"), multiplicity))
    return out
