"""Recompute protocols as data: ``manifests/protocols/<name>.yaml`` with PARENT inheritance.

A protocol says how a selected structure is recomputed: by VASP through one of pymatgen's input
sets (plus INCAR overrides), or locally by tblite / PySCF. Like pymatgen's set YAMLs, a file may
name a ``PARENT`` protocol whose keys it deep-merges over (an INCAR value of ``null`` removes that
tag from the pymatgen set's INCAR, as pymatgen's ``user_incar_settings`` does).
Validation happens once here: unknown keys raise ``ProtocolError`` naming the file and the key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from omni_data.manifest import manifest_dir
from omni_data.yamlfile import load_yaml

Engine = Literal["vasp", "tblite", "pyscf"]
ENGINES: tuple[str, ...] = ("vasp", "tblite", "pyscf")

# pymatgen input sets a protocol may build on (a table, not getattr on user text).
INPUT_SETS: tuple[str, ...] = ("MPStaticSet", "MPRelaxSet", "MPScanStaticSet", "MatPESStaticSet")

_TOP_KEYS = {"PARENT", "engine", "description", "task", "vasp", "molecule", "method"}
_VASP_KEYS = {"input_set", "set_kwargs", "incar", "kpoints", "potcar_spec_without_psp_dir", "use_record_magmoms"}
_MOLECULE_KEYS = {"policy", "vacuum", "cubic", "charged", "incar"}
_METHOD_KEYS = {"name", "options"}


class ProtocolError(ValueError):
    """A protocol file that does not validate; the message names the file and the key."""


@dataclass(frozen=True)
class MoleculePolicy:
    """How a non-periodic structure goes into a periodic code.

    ``policy``: ``box`` (centre in a box with ``vacuum`` Å on every side, cubic if ``cubic``) or
    ``refuse``. ``charged``: ``refuse`` or ``nelect`` (NELECT from POTCAR valences minus the charge,
    with a monopole/dipole correction LDIPOL/IDIPOL=4; needs POTCARs). ``incar``: extra settings
    for boxed molecules (Γ-only smearing and so on).
    """

    policy: Literal["box", "refuse"] = "box"
    vacuum: float = 10.0
    cubic: bool = True
    charged: Literal["refuse", "nelect"] = "refuse"
    incar: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VaspSettings:
    """Which pymatgen input set, its keyword arguments and our INCAR/KPOINTS overrides."""

    input_set: str
    set_kwargs: dict[str, Any] = field(default_factory=dict)
    incar: dict[str, Any] = field(default_factory=dict)
    kpoints: dict[str, Any] | None = None
    potcar_spec_without_psp_dir: bool = True
    use_record_magmoms: bool = False


@dataclass(frozen=True)
class Method:
    """A local method: ``name`` (e.g. GFN2-xTB) and its engine options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Protocol:
    """One validated recompute protocol.

    ``task`` names the existing task whose level of theory the protocol reproduces (e.g. ``mpa``
    for mp-pbe-static); the collected records themselves go to the bridge task."""

    name: str
    engine: str
    description: str
    task: str
    path: str
    vasp: VaspSettings | None = None
    molecule: MoleculePolicy = field(default_factory=MoleculePolicy)
    method: Method | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (recorded in every job.json)."""
        from dataclasses import asdict

        return asdict(self)


def protocol_dir() -> Path:
    """Where protocols live: ``$OMNI_PROTOCOLS`` if set, else ``<manifests>/protocols``."""
    return Path(os.environ.get("OMNI_PROTOCOLS", manifest_dir() / "protocols"))


def list_protocols() -> list[str]:
    """Names of every protocol file (including abstract bases such as ``vasp-base``)."""
    return sorted(p.stem for p in protocol_dir().glob("*.yaml"))


def _resolve_path(name_or_path: str | Path, base: Path | None = None) -> Path:
    """A protocol file: a path, or a name looked up beside the child (``base``), then in protocol_dir()."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path if path.is_absolute() or base is None else (base / path)
    if base is not None and (base / f"{name_or_path}.yaml").is_file():
        return base / f"{name_or_path}.yaml"
    return protocol_dir() / f"{name_or_path}.yaml"


def _deep_merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child over parent, recursively for nested mappings."""
    out = dict(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_raw(name_or_path: str | Path, _seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], Path]:
    """The merged YAML mapping of a protocol after following its PARENT chain."""
    path = _resolve_path(name_or_path, None if not _seen else Path(_seen[-1]).parent)
    if not path.is_file():
        known = ", ".join(list_protocols())
        raise ProtocolError(f"{path}: no such protocol (known: {known})")
    if str(path.resolve()) in _seen:
        raise ProtocolError(f"{path}: PARENT cycle ({' -> '.join(_seen)})")
    data = load_yaml(path, ProtocolError) or {}
    if not isinstance(data, dict):
        raise ProtocolError(f"{path}: top level must be a mapping")
    _check_keys(data, _TOP_KEYS, path, "")
    for section, allowed in (("vasp", _VASP_KEYS), ("molecule", _MOLECULE_KEYS), ("method", _METHOD_KEYS)):
        if data.get(section) is not None:
            if not isinstance(data[section], dict):
                raise ProtocolError(f"{path}: '{section}' must be a mapping")
            _check_keys(data[section], allowed, path, section + ".")
    parent = data.pop("PARENT", None)
    if parent is None:
        return data, path
    merged_parent, _ = load_raw(str(parent), _seen + (str(path.resolve()),))
    return _deep_merge(merged_parent, data), path


def _check_keys(data: dict[str, Any], allowed: set[str], path: Path, prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise ProtocolError(f"{path}: unknown key '{prefix}{key}' (allowed: {', '.join(sorted(allowed))})")


def load_protocol(name_or_path: str | Path) -> Protocol:
    """Load, merge and validate one protocol by name (``manifests/protocols/<name>.yaml``) or path."""
    data, path = load_raw(name_or_path)
    return parse_protocol(data, path)


def parse_protocol(data: dict[str, Any], path: Path) -> Protocol:
    """Validate a merged mapping into a ``Protocol``; errors name ``path`` and the key."""
    engine = data.get("engine")
    if engine not in ENGINES:
        raise ProtocolError(f"{path}: key 'engine' must be one of {', '.join(ENGINES)}, got {engine!r}")
    vasp = None
    method = None
    if engine == "vasp":
        raw = data.get("vasp") or {}
        input_set = raw.get("input_set")
        if input_set not in INPUT_SETS:
            raise ProtocolError(f"{path}: key 'vasp.input_set' must be one of {', '.join(INPUT_SETS)}, got {input_set!r}")
        for key in ("set_kwargs", "incar"):
            if not isinstance(raw.get(key) or {}, dict):
                raise ProtocolError(f"{path}: key 'vasp.{key}' must be a mapping")
        vasp = VaspSettings(
            input_set=input_set,
            set_kwargs=dict(raw.get("set_kwargs") or {}),
            incar={str(k).upper(): v for k, v in (raw.get("incar") or {}).items()},
            kpoints=raw.get("kpoints"),
            potcar_spec_without_psp_dir=bool(raw.get("potcar_spec_without_psp_dir", True)),
            use_record_magmoms=bool(raw.get("use_record_magmoms", False)),
        )
    else:
        raw = data.get("method") or {}
        if not raw.get("name"):
            raise ProtocolError(f"{path}: key 'method.name' is required for engine {engine}")
        method = Method(name=str(raw["name"]), options=dict(raw.get("options") or {}))
    mol = data.get("molecule") or {}
    policy = mol.get("policy", "box")
    if policy not in ("box", "refuse"):
        raise ProtocolError(f"{path}: key 'molecule.policy' must be box or refuse, got {policy!r}")
    charged = mol.get("charged", "refuse")
    if charged not in ("refuse", "nelect"):
        raise ProtocolError(f"{path}: key 'molecule.charged' must be refuse or nelect, got {charged!r}")
    try:
        vacuum = float(mol.get("vacuum", 10.0))
    except (TypeError, ValueError):
        raise ProtocolError(f"{path}: key 'molecule.vacuum' must be a number (Å)") from None
    if not vacuum > 0:
        raise ProtocolError(f"{path}: key 'molecule.vacuum' must be > 0 Å, got {vacuum}")
    molecule = MoleculePolicy(
        policy=policy,
        vacuum=vacuum,
        cubic=bool(mol.get("cubic", True)),
        charged=charged,
        incar={str(k).upper(): v for k, v in (mol.get("incar") or {}).items()},
    )
    return Protocol(
        name=path.stem,
        engine=engine,
        description=str(data.get("description", "")),
        task=str(data.get("task", "bridge")),
        path=str(path),
        vasp=vasp,
        molecule=molecule,
        method=method,
    )


# --- level-of-theory verification at collect time (used by ``recompute.verify``) ----------------
# What "the output was computed with this protocol" means, parameter by parameter. A person
# assembling a dataset for a paper mixes no two of these, so all but EDIFF and the k-point grid
# must match exactly; the numeric tolerances are for how VASP prints values, not for leniency.
ENCUT_TOL_EV: float = 0.5  # |ENCUT_out - ENCUT_protocol| <= 0.5 eV (VASP prints 520.00000000)
U_TOL_EV: float = 1e-3  # LDAUU per species, eV
EDIFF_REL_TOL: float = 1e-6  # EDIFF_out <= EDIFF_protocol * (1 + tol): tighter SCF is accepted, looser is not
KPOINT_DENSITY_REL_TOL: float = 0.10  # k-points per Å⁻³ of the output >= (1 - tol) x the protocol's; denser is accepted
# VASP parameters compared exactly (after normalising case/spelling); defaults as VASP applies them.
VASP_DEFAULTS: dict[str, Any] = {"ISPIN": 1, "PREC": "normal", "EDIFF": 1e-4, "NSW": 0, "IBRION": -1,
                                 "LDAU": False, "IVDW": 0, "LHFCALC": False}
# local engines: what results.json must report, compared exactly (method/functional/basis
# case-insensitively, charge within 1e-8 e, multiplicity exactly).
CHARGE_TOL: float = 1e-8


def resolved_yaml(name_or_path: str | Path) -> str:
    """The protocol after PARENT merging, as canonical YAML (sorted keys): what its hash covers."""
    data, _ = load_raw(name_or_path)
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False)


def protocol_sha256(name_or_path: str | Path) -> str:
    """sha256 (hex) of ``resolved_yaml``: changes whenever the protocol or any PARENT changes
    what it asks for (comments and key order do not count)."""
    import hashlib

    return hashlib.sha256(resolved_yaml(name_or_path).encode("utf-8")).hexdigest()
