"""Recompute protocols as data: ``manifests/protocols/<name>.yaml`` with PARENT inheritance.

A protocol says how a selected structure is recomputed: by VASP through one of pymatgen's input
sets (plus INCAR overrides), or locally by tblite / PySCF. Like pymatgen's set YAMLs, a file may
name a ``PARENT`` protocol whose keys it deep-merges over (an INCAR value of ``null`` removes that
tag from the pymatgen set's INCAR, as pymatgen's ``user_incar_settings`` does).
Validation happens once here, through ``omni_data.typedconfig``: each file's keys and types are
checked before merging (so an error names the file that holds the typo), the merged mapping is
then built into ``Protocol``; every problem raises one ``ProtocolError`` naming the file and keys.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml

from omni_data.manifest import manifest_dir
from omni_data.typedconfig import Check, check_partial, from_mapping, internal
from omni_data.yamlfile import load_yaml

__all__ = [
    "ProtocolError",
    "MoleculePolicy",
    "VaspSettings",
    "Method",
    "Protocol",
    "protocol_dir",
    "list_protocols",
    "load_raw",
    "load_protocol",
    "parse_protocol",
    "resolved_yaml",
    "protocol_sha256",
]

Engine = Literal["vasp", "tblite", "pyscf"]
ENGINES: tuple[str, ...] = get_args(Engine)

# pymatgen input sets a protocol may build on (a table, not getattr on user text).
InputSet = Literal["MPStaticSet", "MPRelaxSet", "MPScanStaticSet", "MatPESStaticSet"]
INPUT_SETS: tuple[str, ...] = get_args(InputSet)


def _positive_angstrom(value: float) -> None:
    if not value > 0:
        raise ValueError(f"must be > 0 Å, got {value}")


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
    vacuum: Annotated[float, Check(_positive_angstrom)] = 10.0
    cubic: bool = True
    charged: Literal["refuse", "nelect"] = "refuse"
    incar: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VaspSettings:
    """Which pymatgen input set, its keyword arguments and our INCAR/KPOINTS overrides."""

    input_set: InputSet
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

    engine: Engine
    description: str = ""
    task: str = "bridge"
    name: str = internal()
    path: str = internal()
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
    parent = data.pop("PARENT", None)
    if parent is not None and not isinstance(parent, str):
        raise ProtocolError(f"{path}: key 'PARENT' must be a protocol name, got {parent!r}")
    check_partial(Protocol, data, str(path), ProtocolError)  # this file's own keys, before merging
    if parent is None:
        return data, path
    merged_parent, _ = load_raw(str(parent), _seen + (str(path.resolve()),))
    return _deep_merge(merged_parent, data), path


def load_protocol(name_or_path: str | Path) -> Protocol:
    """Load, merge and validate one protocol by name (``manifests/protocols/<name>.yaml``) or path."""
    data, path = load_raw(name_or_path)
    return parse_protocol(data, path)


def parse_protocol(data: dict[str, Any], path: Path) -> Protocol:
    """Validate a merged mapping into a ``Protocol``; errors name ``path`` and the keys."""
    engine = data.get("engine")
    extra = []
    if engine == "vasp" and data.get("vasp") is None:  # a vasp mapping without input_set: from_mapping says so
        extra.append(f"key 'vasp.input_set' is required for engine vasp (one of {', '.join(INPUT_SETS)})")
    if engine in ENGINES and engine != "vasp" and data.get("method") is None:
        extra.append(f"key 'method.name' is required for engine {engine}")
    p = from_mapping(Protocol, data, str(path), ProtocolError, extra=extra)
    vasp = p.vasp if p.engine == "vasp" else None
    if vasp is not None:
        vasp = dataclasses.replace(vasp, incar={str(k).upper(): v for k, v in vasp.incar.items()})
    molecule = dataclasses.replace(p.molecule, incar={str(k).upper(): v for k, v in p.molecule.incar.items()})
    return dataclasses.replace(
        p, name=path.stem, path=str(path), vasp=vasp, molecule=molecule, method=p.method if p.engine != "vasp" else None
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
VASP_DEFAULTS: dict[str, Any] = {
    "ISPIN": 1,
    "PREC": "normal",
    "EDIFF": 1e-4,
    "NSW": 0,
    "IBRION": -1,
    "LDAU": False,
    "IVDW": 0,
    "LHFCALC": False,
}
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
