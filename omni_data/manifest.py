"""Typed dataset manifests (``manifests/<name>.yaml``), validated once; unknown keys are errors.

A manifest says what a database's numbers mean: task, level of theory, where it is published,
source format and key map, units, energy convention, filters and the group key for splits.
"""
from __future__ import annotations

import dataclasses
import os
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_data.readers import READERS, ReadOptions
from omni_data.schema import ENERGY_KINDS, Record
from omni_data.tasks import TaskRule, assign_task
from omni_data import units
from omni_data.yamlfile import load_yaml

# Package data: ``omni_data/manifests`` is a symlink to the checkout's top-level ``manifests/`` (the
# source of truth); a built wheel holds a real copy (docs/packaging.md).
MANIFEST_DIR = Path(str(resources.files("omni_data") / "manifests"))


class ManifestError(ValueError):
    """A manifest that does not validate; the message names the file and the key."""


@dataclass(frozen=True)
class SourceFile:
    """One release file as the publisher lists it: direct URL, size, checksum and split."""

    name: str
    url: str = ""
    size_bytes: int | None = None
    sha256: str | None = None
    md5: str | None = None
    split: str = "all"  # train | val | test | all, as published
    subset: str = ""  # the publisher's subdataset name (e.g. OMat24 "rattled-300"), if any


@dataclass(frozen=True)
class Filters:
    """Declared quality filters; ``None`` disables one."""

    max_force: float | None = None  # eV/Å, max per-atom |F|
    energy_per_atom: tuple[float, float] | None = None  # eV/atom window [lo, hi]
    min_distance: float | None = None  # Å, minimum interatomic distance
    max_stress: float | None = None  # eV/Å³, max |stress component|


@dataclass(frozen=True)
class Manifest:
    name: str
    dataset: str
    task: str
    description: str
    format: str
    level_of_theory: dict[str, Any]
    licence: str
    citation: str
    url: str = ""
    files: tuple[SourceFile, ...] = ()
    globs: tuple[str, ...] = ()
    size: dict[str, Any] = field(default_factory=dict)
    key_map: dict[str, str] = field(default_factory=dict)
    units: dict[str, Any] = field(default_factory=dict)
    energy: dict[str, Any] = field(default_factory=dict)
    filters: Filters = Filters()
    group_key: str = "id"
    reader_options: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    notes: str = ""
    aliases: tuple[str, ...] = ()
    task_rules: tuple[TaskRule, ...] = ()
    path: str = ""

    def assign_task(self, record: Record) -> Record:
        """Set ``record.task`` from the first matching ``task_rules`` entry (else keep ``task``)."""
        return assign_task(record, self.task_rules)

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every task this manifest's records can land in."""
        return tuple(dict.fromkeys([self.task, *(r.task for r in self.task_rules)]))

    def read_options(self) -> ReadOptions:
        """The ``ReadOptions`` this manifest implies for its reader."""
        return ReadOptions(
            dataset=self.dataset,
            task=self.task,
            key_map=dict(self.key_map),
            energy_unit=self.units.get("energy", "eV"),
            length_unit=self.units.get("length", "Å"),
            stress_unit=self.units.get("stress", "eV/Å^3"),
            stress_sign=int(self.units.get("stress_sign", 1)),
            energy_key=self.energy.get("key", "energy"),
            energy_kind=self.energy.get("kind", "total"),
            options=dict(self.reader_options),
            task_rules=self.task_rules,
        )


_REQUIRED = ("name", "task", "description", "format", "level_of_theory", "licence", "citation")
_UNIT_KEYS = {"energy", "length", "stress", "stress_sign"}
_ENERGY_KEYS = {"key", "kind", "note", "restorable_total"}


def _fail(where: str, key: str, reason: str) -> ManifestError:
    return ManifestError(f"{where}: key {key!r}: {reason}")


def parse_manifest(data: Any, where: str = "<manifest>") -> Manifest:
    """Validate a manifest mapping and build the typed ``Manifest``; errors name ``where`` and the key."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ManifestError(f"{where}:1: a manifest must be a mapping of keys (name, task, ...), got {got}")
    known = {f.name for f in dataclasses.fields(Manifest)} - {"path"}
    for key in data:
        if key not in known:
            raise _fail(where, key, f"unknown key (known: {', '.join(sorted(known))})")
    for key in _REQUIRED:
        if key not in data or data[key] in (None, ""):
            raise _fail(where, key, "required")
    if data["format"] not in READERS:
        raise _fail(where, "format", f"{data['format']!r} is not a registered reader ({', '.join(READERS)})")
    unit_map = data.get("units") or {}
    for key, value in unit_map.items():
        if key not in _UNIT_KEYS:
            raise _fail(where, f"units.{key}", f"unknown (known: {', '.join(sorted(_UNIT_KEYS))})")
        try:
            if key == "energy":
                units.energy_factor(value)
            elif key == "length":
                units.length_factor(value)
            elif key == "stress":
                units.stress_factor(value)
            elif value not in (1, -1):
                raise ValueError("stress_sign must be 1 or -1")
        except ValueError as exc:
            raise _fail(where, f"units.{key}", str(exc)) from None
    energy = data.get("energy") or {}
    for key in energy:
        if key not in _ENERGY_KEYS:
            raise _fail(where, f"energy.{key}", f"unknown (known: {', '.join(sorted(_ENERGY_KEYS))})")
    if energy.get("kind", "total") not in ENERGY_KINDS:
        raise _fail(where, "energy.kind", f"{energy.get('kind')!r} not in {ENERGY_KINDS}")
    filters_raw = data.get("filters") or {}
    filter_names = {f.name for f in dataclasses.fields(Filters)}
    for key, value in filters_raw.items():
        if key not in filter_names:
            raise _fail(where, f"filters.{key}", f"unknown (known: {', '.join(sorted(filter_names))})")
        if key == "energy_per_atom":
            if not (isinstance(value, (list, tuple)) and len(value) == 2 and value[0] < value[1]):
                raise _fail(where, "filters.energy_per_atom", "must be [low, high] with low < high")
        elif value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise _fail(where, f"filters.{key}", f"must be a positive number, got {value!r}")
    filters = Filters(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in filters_raw.items()})
    files = []
    for i, entry in enumerate(data.get("files") or []):
        if not isinstance(entry, dict) or "name" not in entry:
            raise _fail(where, f"files[{i}]", "each file needs at least a name")
        extra = set(entry) - {"name", "url", "size_bytes", "sha256", "md5", "split", "subset"}
        if extra:
            raise _fail(where, f"files[{i}].{sorted(extra)[0]}", "unknown key")
        files.append(SourceFile(**entry))
    rules = []
    for i, entry in enumerate(data.get("task_rules") or []):
        if not isinstance(entry, dict) or not {"field", "task"} <= set(entry):
            raise _fail(where, f"task_rules[{i}]", "each rule needs field and task (and min and/or max)")
        extra = set(entry) - {"field", "task", "min", "max"}
        if extra:
            raise _fail(where, f"task_rules[{i}].{sorted(extra)[0]}", "unknown key")
        rules.append(TaskRule(**entry))
    weight = data.get("weight", 1.0)
    if not (isinstance(weight, (int, float)) and weight >= 0):
        raise _fail(where, "weight", f"must be a number >= 0, got {weight!r}")
    kwargs = dict(data)
    kwargs.update(
        dataset=data.get("dataset", data["name"]),
        files=tuple(files),
        globs=tuple(data.get("globs") or ()),
        filters=filters,
        key_map=dict(data.get("key_map") or {}),
        units=dict(unit_map),
        energy=dict(energy),
        size=dict(data.get("size") or {}),
        reader_options=dict(data.get("reader_options") or {}),
        aliases=tuple(data.get("aliases") or ()),
        task_rules=tuple(rules),
        path=where,
    )
    return Manifest(**kwargs)


def manifest_dir() -> Path:
    """Where manifests live: ``$OMNI_MANIFESTS`` if set, else the packaged ``omni_data/manifests``."""
    return Path(os.environ.get("OMNI_MANIFESTS", MANIFEST_DIR))


def load_manifest(name_or_path: str | Path) -> Manifest:
    """Load ``manifests/<name>.yaml`` or a YAML file path, validated."""
    path = Path(name_or_path)
    if not path.suffix:
        path = manifest_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            path = _by_alias(str(name_or_path)) or path
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest (known: {', '.join(list_manifests())})")
    return parse_manifest(load_yaml(path, ManifestError), str(path))


def _by_alias(alias: str) -> Path | None:
    for candidate in sorted(manifest_dir().glob("*.yaml")):
        data = load_yaml(candidate, ManifestError)
        if isinstance(data, dict) and alias in (data.get("aliases") or []):
            return candidate
    return None


def list_manifests() -> list[str]:
    """Names of every dataset manifest (protocols excluded)."""
    return sorted(p.stem for p in manifest_dir().glob("*.yaml"))
