"""Typed dataset manifests (``manifests/<name>.yaml``), validated once; unknown keys are errors.

A manifest says what a database's numbers mean: task, level of theory, where it is published,
source format and key map, units, energy convention, filters and the group key for splits.
It is read through ``omni_data.typedconfig``: every problem is reported at once, naming the file
and each key, including ``key_map`` keys (the schema's fields), ``reader_options`` (those the
reader declares), ``level_of_theory`` keys and ``units`` values (``omni_data.units``). A name
that is no manifest suggests the closest (``UnknownDataset``). Keys: docs/manifests.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from omni_data import units
from omni_data.readers import READERS, ReadOptions
from omni_data.schema import ENERGY_KINDS, FIELDS, Record
from omni_data.tasks import TaskRule, assign_task
from omni_data.typedconfig import (
    Check,
    KeyProblem,
    did_you_mean,
    from_mapping,
    internal,
)
from omni_data.yamlfile import load_yaml

__all__ = [
    "ManifestError",
    "approx_size_bytes",
    "SourceFile",
    "Listing",
    "LISTING_APIS",
    "Filters",
    "Manifest",
    "parse_manifest",
    "manifest_dir",
    "UnknownDataset",
    "unknown_dataset_message",
    "load_manifest",
    "resolve_target",
    "list_manifests",
]

# Package data: ``omni_data/manifests`` is a symlink to the checkout's top-level ``manifests/`` (the
# source of truth); a built wheel holds a real copy (docs/packaging.md).
MANIFEST_DIR = Path(str(resources.files("omni_data") / "manifests"))


class ManifestError(ValueError):
    """A manifest that does not validate; the message names the file and the key."""


# --- what a manifest's nested keys may say -------------------------------------------------------
LEVEL_OF_THEORY_KEYS: tuple[str, ...] = (
    "code",
    "version",
    "method",
    "functional",
    "basis",
    "pseudopotentials",
    "cutoff_eV",
    "kpoints",
    "smearing",
    "hubbard_u",
    "dispersion",
    "spin",
    "solvation",
    "kind",
    "notes",
)
"""Keys of ``level_of_theory`` (what was computed, in words); anything else is a typo."""
KEY_MAP_KEYS: tuple[str, ...] = (*FIELDS, "virial", "id", "group")
"""Keys of ``key_map``: the schema's field names plus ``virial`` (read as stress), ``id``, ``group``."""
UNIT_KEYS: tuple[str, ...] = ("energy", "length", "stress", "stress_sign")
ENERGY_KEYS: tuple[str, ...] = ("key", "kind", "note", "restorable_total")
SPLITS: tuple[str, ...] = ("train", "val", "test", "all")


def _known_keys(known: tuple[str, ...], what: str) -> Callable[[dict[str, Any]], None]:
    def check(value: dict[str, Any]) -> None:
        for key in value:
            if key not in known:
                raise KeyProblem(str(key), f"unknown {what} key ({did_you_mean(key, known)}known: {', '.join(known)})")

    return check


_check_key_map = _known_keys(KEY_MAP_KEYS, "key_map")


def _check_level_of_theory(value: dict[str, Any]) -> None:
    _known_keys(LEVEL_OF_THEORY_KEYS, "level_of_theory")(value)
    if not any(value.get(k) not in (None, "") for k in ("code", "method", "functional")):
        raise ValueError("must name at least one of code, method, functional")


def _check_units(value: dict[str, Any]) -> None:
    _known_keys(UNIT_KEYS, "units")(value)
    factors = {"energy": units.energy_factor, "length": units.length_factor, "stress": units.stress_factor}
    for key, unit in value.items():
        if key == "stress_sign":
            if unit not in (1, -1) or isinstance(unit, bool):
                raise KeyProblem(key, f"must be 1 or -1, got {unit!r}")
            continue
        try:
            factors[key](unit)
        except ValueError as exc:
            raise KeyProblem(key, str(exc)) from None


def _check_energy(value: dict[str, Any]) -> None:
    _known_keys(ENERGY_KEYS, "energy")(value)
    if value.get("kind", "total") not in ENERGY_KINDS:
        raise KeyProblem("kind", f"{value.get('kind')!r} not in {ENERGY_KINDS}")


def _check_format(value: str) -> None:
    if value not in READERS:
        raise ValueError(f"{value!r} is not a registered reader ({', '.join(READERS)})")


def _positive(value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"must be a positive number, got {value!r}")


def _window(value: tuple[float, float] | None) -> None:
    if value is not None and not value[0] < value[1]:
        raise ValueError("must be [low, high] with low < high")


def _non_negative(value: float) -> None:
    if not value >= 0:
        raise ValueError(f"must be a number >= 0, got {value!r}")


def _check_split(value: str) -> None:
    if value not in SPLITS:
        raise ValueError(f"must be one of {', '.join(SPLITS)}, got {value!r}")


SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "kB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
"""Units a rounded size (``size_approx``) may use: decimal kB..TB or binary KiB..TiB."""
_APPROX_SIZE = re.compile(r"(\d+(?:\.\d+)?) (" + "|".join(SIZE_UNITS) + ")")


def approx_size_bytes(text: str) -> int:
    """Bytes of a rounded size such as ``21 GB`` or ``232 MiB``; ValueError naming the accepted form."""
    match = _APPROX_SIZE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"must be a number, one space and a unit ({', '.join(SIZE_UNITS)}), e.g. '21 GB', got {text!r}"
        )
    return round(float(match.group(1)) * SIZE_UNITS[match.group(2)])


def _check_size_approx(value: str) -> None:
    if value:
        approx_size_bytes(value)


@dataclass(frozen=True)
class SourceFile:
    """One release file as the publisher lists it: direct URL, size, checksum and split."""

    name: str
    url: str = ""
    size_bytes: int | None = None  # exact; download checks it
    sha256: str | None = None
    md5: str | None = None
    split: Annotated[str, Check(_check_split)] = "all"  # train | val | test | all, as published
    subset: str = ""  # the publisher's subdataset name (e.g. OMat24 "rattled-300"), if any
    size_approx: Annotated[str, Check(_check_size_approx)] = ""  # the publisher's rounded size ("21 GB")

    @property
    def approx_bytes(self) -> int | None:
        """Bytes of ``size_approx`` (None when not given); shown as ``~21 GB``; a download under half
        or over twice it is refused (``download.APPROX_FACTOR``)."""
        return approx_size_bytes(self.size_approx) if self.size_approx else None


LISTING_APIS: dict[str, str] = {
    "figshare": "https://api.figshare.com",
    "invenio": "https://zenodo.org",
    "gcs": "https://storage.googleapis.com",
    "s3": "https://s3.amazonaws.com",
}
"""The publishers' file-listing APIs ``omni_data.release_listing`` reads, with each one's default site."""


def _check_listing(value: Listing | None) -> None:
    if value is None:
        return
    if value.api not in LISTING_APIS:
        raise KeyProblem("api", f"{value.api!r} is not a listing API ({', '.join(LISTING_APIS)})")
    needs = "bucket" if value.api in ("gcs", "s3") else "record"
    if not getattr(value, needs):
        raise KeyProblem(needs, f"required for api {value.api!r}")
    if value.version is not None and value.api != "figshare":
        raise KeyProblem("version", "only a figshare article has versions; an invenio record id names one version")


@dataclass(frozen=True)
class Listing:
    """Where the publisher's API lists a release's files (name, direct URL, exact size, checksum).

    For a release whose file list could not be copied into the manifest: ``omni-data download``
    reads it from the API and pins what it read in the download folder (``.omni-listing.lock``)."""

    api: str  # figshare | invenio (Zenodo, Materials Cloud Archive) | gcs, s3 (a public Google Cloud / AWS bucket)
    record: str = ""  # figshare article id; invenio record id
    version: int | None = None  # figshare article version (the published one the manifest describes)
    bucket: str = ""  # gcs or s3 bucket
    prefix: str = ""  # gcs or s3 key prefix; local names are the object names without it
    site: str = ""  # the API's base URL (default: LISTING_APIS[api])
    include: tuple[str, ...] = ()  # fnmatch patterns on the file names; all files when empty
    split: Annotated[str, Check(_check_split)] = "all"  # the split of files the manifest's files do not name

    @property
    def base(self) -> str:
        """The API's base URL without a trailing slash."""
        return (self.site or LISTING_APIS.get(self.api, "")).rstrip("/")


@dataclass(frozen=True)
class Filters:
    """Declared quality filters; ``None`` disables one."""

    max_force: Annotated[float | None, Check(_positive)] = None  # eV/Å, max per-atom |F|
    energy_per_atom: Annotated[tuple[float, float] | None, Check(_window)] = None  # eV/atom window [lo, hi]
    min_distance: Annotated[float | None, Check(_positive)] = None  # Å, minimum interatomic distance
    max_stress: Annotated[float | None, Check(_positive)] = None  # eV/Å³, max |stress component|


@dataclass(frozen=True)
class Manifest:
    """One dataset's manifest; built by :func:`parse_manifest` (``omni_data.typedconfig``)."""

    name: str
    task: str
    description: str
    format: Annotated[str, Check(_check_format)]
    level_of_theory: Annotated[dict[str, Any], Check(_check_level_of_theory)]
    licence: str
    citation: str
    dataset: str = ""  # default: name
    url: str = ""
    files: tuple[SourceFile, ...] = ()
    listing: Annotated[Listing | None, Check(_check_listing)] = None
    globs: tuple[str, ...] = ()
    size: dict[str, Any] = field(default_factory=dict)
    key_map: Annotated[dict[str, str], Check(_check_key_map)] = field(default_factory=dict)
    units: Annotated[dict[str, Any], Check(_check_units)] = field(default_factory=dict)
    energy: Annotated[dict[str, Any], Check(_check_energy)] = field(default_factory=dict)
    filters: Filters = Filters()
    group_key: str = "id"
    reader_options: dict[str, Any] = field(default_factory=dict)
    weight: Annotated[float, Check(_non_negative)] = 1.0
    notes: str = ""
    aliases: tuple[str, ...] = ()
    task_rules: tuple[TaskRule, ...] = ()
    path: str = internal()

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

    def select_files(
        self,
        splits: tuple[str, ...] = (),
        subsets: tuple[str, ...] = (),
        files: tuple[SourceFile, ...] | list[SourceFile] | None = None,
    ) -> list[SourceFile]:
        """The release files (``files``, default the manifest's own) of the given splits and subsets
        (all when none is given); a split or subset no file has raises ``ManifestError`` naming the
        known ones."""
        files = self.files if files is None else files
        for wanted, have, what in (
            (splits, {f.split for f in files}, "split"),
            (subsets, {f.subset for f in files if f.subset}, "subset"),
        ):
            unknown = [w for w in wanted if w not in have]
            if unknown:
                raise ManifestError(
                    f"{self.path}: no {what} {', '.join(map(repr, unknown))} in manifest "
                    f"{self.name!r} (its {what}s: {', '.join(sorted(have)) or 'none'})"
                )
        return [f for f in files if (not splits or f.split in splits) and (not subsets or f.subset in subsets)]

    @property
    def download_bytes(self) -> int | None:
        """Total size of the listed release files; None when a file's size is not known."""
        sizes = [f.size_bytes for f in self.files]
        return None if not sizes or None in sizes else sum(typing.cast(list[int], sizes))


def _reader_option_problems(data: dict[str, Any]) -> list[str]:
    """Problems with ``reader_options``: each must be an option the manifest's reader declares."""
    fmt = data.get("format")
    spec = READERS.get(fmt) if isinstance(fmt, str) else None
    options = data.get("reader_options")
    if spec is None or not isinstance(options, dict):
        return []
    return [
        f"key 'reader_options.{key}': the {spec.name} reader has no such option "
        f"(its options: {', '.join(spec.option_names)})"
        for key in options
        if key not in spec.option_names
    ]


def parse_manifest(data: Any, where: str = "<manifest>") -> Manifest:
    """Validate a manifest mapping and build the typed ``Manifest``; every problem is reported at
    once, each naming ``where`` and the key."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ManifestError(f"{where}:1: a manifest must be a mapping of keys (name, task, ...), got {got}")
    m = from_mapping(Manifest, data, where, ManifestError, extra=_reader_option_problems(data))
    return dataclasses.replace(m, dataset=m.dataset or m.name, path=where)


def manifest_dir() -> Path:
    """Where manifests live: ``$OMNI_MANIFESTS`` if set, else the packaged ``omni_data/manifests``."""
    return Path(os.environ.get("OMNI_MANIFESTS", MANIFEST_DIR))


class UnknownDataset(ManifestError):
    """A bare name that is no manifest, no alias and (where checked) no file or folder either."""


def unknown_dataset_message(name: str) -> str:
    """``unknown dataset 'mpttrj' (did you mean 'mptrj'?): no such manifest; known: ...; no such file either``."""
    known = list_manifests()
    aliases = {alias: stem for stem, data in _manifest_data() for alias in data.get("aliases") or []}
    close = difflib.get_close_matches(name, [*known, *aliases], n=3, cutoff=0.6)
    names = list(dict.fromkeys(aliases.get(c, c) for c in close))  # an alias suggests its manifest
    hint = f" (did you mean {' or '.join(map(repr, names))}?)" if names else ""
    tail = "no such file either" if not Path(name).exists() else f"{name} is a data path, not a manifest"
    return (
        f"unknown dataset {name!r}{hint}: no such manifest in {manifest_dir()}; "
        f"known: {', '.join(known) or 'none'}; {tail}"
    )


def load_manifest(name_or_path: str | Path) -> Manifest:
    """Load ``manifests/<name>.yaml`` (a name or alias) or a YAML file path, validated; an unknown
    name raises ``UnknownDataset`` with the known names and the closest match."""
    path = Path(name_or_path)
    if not path.suffix:
        by_name = manifest_dir() / f"{name_or_path}.yaml"
        found = by_name if by_name.is_file() else _by_alias(str(name_or_path))
        if found is None:
            raise UnknownDataset(unknown_dataset_message(str(name_or_path)))
        path = found
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file (known datasets: {', '.join(list_manifests())})")
    return parse_manifest(load_yaml(path, ManifestError), str(path))


def resolve_target(target: str, allow_plain: bool = False) -> Manifest | None:
    """What ``omni-data ingest TARGET`` names: a manifest (by ``.yaml`` path, name or alias), or
    None for a data path (an existing file or folder; with ``allow_plain``, any name that is no
    manifest). A bare name that is neither raises ``UnknownDataset`` ("unknown dataset 'mpttrj'
    (did you mean 'mptrj'?) ...; no such file either"); a broken manifest raises ``ManifestError``."""
    if target.endswith((".yaml", ".yml")):
        return load_manifest(target)
    path = Path(target)
    if path.exists() or path.suffix:
        return None  # a data path (the caller says so if it does not exist)
    try:
        return load_manifest(target)
    except UnknownDataset:
        if allow_plain:
            return None
        raise


def _manifest_data() -> list[tuple[str, dict[str, Any]]]:
    """(stem, YAML mapping) of every manifest in ``manifest_dir()``; a broken file raises ManifestError."""
    out = []
    for candidate in sorted(manifest_dir().glob("*.yaml")):
        data = load_yaml(candidate, ManifestError)
        out.append((candidate.stem, data if isinstance(data, dict) else {}))
    return out


def _by_alias(alias: str) -> Path | None:
    for stem, data in _manifest_data():
        if alias in (data.get("aliases") or []):
            return manifest_dir() / f"{stem}.yaml"
    return None


def list_manifests() -> list[str]:
    """Names of every dataset manifest (protocols excluded)."""
    return sorted(p.stem for p in manifest_dir().glob("*.yaml"))
