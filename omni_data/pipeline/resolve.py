"""From what a user asked (``IngestRequest``) to what ingest runs (``IngestSpec``).

Manifest or plain path, where the source files are (``--source``, a configured local copy, or a
message saying where to put them and how to download them), which reader (the manifest's, or
sniffed from the file or the files in a folder), the key map and units of a plain path.
Everything here raises ``ValueError`` naming the option or file for a request that cannot run,
or ``FileNotFoundError`` for a source that does not exist.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni_data.store.writer import FORMATS, LEGACY_FORMATS

if TYPE_CHECKING:
    from omni_data.manifest import Manifest
    from omni_data.pipeline.ingest import IngestSpec
    from omni_data.pipeline.request import IngestRequest

__all__ = [
    "is_manifest",
    "manifest_of",
    "missing_source_message",
    "default_source",
    "sniff_source",
    "parse_key_map",
    "check_units",
    "build_spec",
]

SNIFF_LIMIT = 2000
"""Files of a folder looked at to guess its format."""


def is_manifest(target: str) -> bool:
    """A manifest path, name or alias (``omat`` -> ``omat24``) that is not also an existing data path
    (``omni_data.manifest.resolve_target``); a broken manifest raises ``ManifestError``, it is
    named, not mistaken for a data path."""
    return manifest_of(target) is not None


def manifest_of(target: str) -> Manifest | None:
    """The manifest ``target`` names, or None for a data path or a name that is no manifest (the
    caller then explains a missing path); ``ManifestError`` for a broken or missing ``.yaml``."""
    from omni_data.manifest import resolve_target

    return resolve_target(target, allow_plain=True)  # UnknownDataset is caught there, by type


def missing_source_message(m: Manifest) -> str:
    """Where to put a manifest's files and the ``download`` command that gets them
    (``omni_data.download.where_to_put``), and where ingest looked."""
    import os

    from omni_data.download import where_to_put
    from omni_data.sources import DEFAULT_SOURCES

    root = os.environ.get("OMNI_DATA_ROOT")
    looked = f"{Path(root) / m.name} (does not exist)" if root else "$OMNI_DATA_ROOT (not set)"
    sources = os.environ.get("OMNI_SOURCES", str(DEFAULT_SOURCES))
    return (
        f"manifest {m.name}: {where_to_put(m)}; looked at {looked} and {sources} (no '{m.name}:' entry; "
        f"add '{m.name}: DIR' there to name a folder elsewhere)"
    )


def default_source(m: Manifest) -> Path:
    """``--source`` left out: the configured local copy (``omni_data.sources.local_source``)."""
    from omni_data.sources import local_source

    for name in dict.fromkeys([m.name, m.dataset, *m.aliases]):
        found = local_source(name)
        if found is not None:
            return found
    raise ValueError(missing_source_message(m))  # a usage error: --source was left out


def sniff_source(source: Path) -> str:
    """The reader for a file (``readers.sniff``) or for a folder: the format most of its files
    are recognised as; ValueError naming the folder when none is."""
    from omni_data.readers import sniff

    source = Path(source)
    if not source.is_dir():
        return sniff(source)
    seen: Counter[str] = Counter()
    looked = 0
    for path in sorted(source.rglob("*")):
        if looked >= SNIFF_LIMIT:
            break
        if not path.is_file() or path.name.startswith("."):
            continue
        looked += 1
        try:
            seen[sniff(path)] += 1
        except (ValueError, OSError):
            continue
    if not seen:
        from omni_data.readers import READERS

        raise ValueError(
            f"{source}: no file in this folder ({looked} looked at) is recognised by a reader; "
            f"pass --format (one of {', '.join(READERS)})"
        )
    return seen.most_common(1)[0][0]


def parse_key_map(items: list[str] | tuple[str, ...] | dict[str, str] | None) -> dict[str, str]:
    """``["energy=potential-energy", ...]`` (or a dict) as a checked key map."""
    from omni_data.manifest import KEY_MAP_KEYS

    if not items:
        return {}
    pairs = list(items.items()) if isinstance(items, dict) else []
    if not isinstance(items, dict):
        for item in items:
            name, sep, key = item.partition("=")
            if not sep or not name.strip() or not key.strip():
                raise ValueError(f"--key-map {item!r}: expected FIELD=SOURCE_KEY, e.g. energy=potential-energy")
            pairs.append((name.strip(), key.strip()))
    for name, _key in pairs:
        if name not in KEY_MAP_KEYS:
            raise ValueError(f"--key-map {name}=...: {name!r} is not a field (one of {', '.join(KEY_MAP_KEYS)})")
    return dict(pairs)


def check_units(energy_unit: str | None, stress_unit: str | None) -> None:
    """ValueError naming the option for a unit ``omni_data.units`` does not know."""
    from omni_data import units

    if energy_unit is not None:
        try:
            units.energy_factor(energy_unit)
        except ValueError as exc:
            raise ValueError(f"--energy-unit: {exc}") from None
    if stress_unit is not None:
        try:
            units.stress_factor(stress_unit)
        except ValueError as exc:
            raise ValueError(f"--stress-unit: {exc}") from None


def _check_layout(request: IngestRequest) -> tuple[str, ...]:
    formats = tuple(f.strip() for f in request.formats if f.strip())
    if not formats or set(formats) - set(FORMATS) - set(LEGACY_FORMATS):
        raise ValueError(f"--shard-formats must list some of {', '.join(FORMATS)}, got {','.join(request.formats)!r}")
    if request.shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {request.shard_size}")
    return formats


def build_spec(request: IngestRequest) -> IngestSpec:
    """The ``IngestSpec`` a request describes; ValueError naming the missing or bad option."""
    from omni_data.harmonize.sanity import SanityBounds
    from omni_data.pipeline.ingest import IngestSpec
    from omni_data.readers import ReadOptions

    formats = _check_layout(request)
    key_map = parse_key_map(request.key_map)
    check_units(request.energy_unit, request.stress_unit)
    command = list(request.command) if request.command is not None else ["omni-data", "ingest", *sys.argv[2:]]
    bounds = SanityBounds() if request.sanity else None
    m = manifest_of(request.target)
    if m is not None:
        source = Path(request.source) if request.source is not None else default_source(m)
        opts = m.read_options()
        opts.dataset = request.dataset or opts.dataset
        opts.task = request.task or opts.task
        _override_units(opts, request, key_map)
        return IngestSpec(
            store=Path(request.out),
            reader=request.format or m.format,
            source=source,
            options=opts,
            globs=m.globs or None,
            filters=m.filters,
            shard_size=request.shard_size,
            formats=formats,
            manifest={"name": m.name, "path": m.path},
            command=command,
            bounds=None if bounds is None else bounds.widened(m.filters),
        )
    source = Path(request.source) if request.source is not None else Path(request.target)
    if not request.dataset or not request.task:
        raise ValueError(_not_a_manifest(request.target))
    if not source.exists():
        known = "" if request.source is not None else f", and no manifest of that name (known: {_known()})"
        raise FileNotFoundError(f"{source}: source path does not exist{known}")
    reader = request.format or sniff_source(source if source.exists() else Path(request.target))
    opts = ReadOptions(dataset=request.dataset, task=request.task, energy_unit=request.energy_unit or "eV")
    _override_units(opts, request, key_map)
    return IngestSpec(
        store=Path(request.out),
        reader=reader,
        source=source,
        options=opts,
        shard_size=request.shard_size,
        formats=formats,
        command=command,
        bounds=bounds,
    )


def _override_units(opts: Any, request: IngestRequest, key_map: dict[str, str]) -> None:
    if request.energy_unit:
        opts.energy_unit = request.energy_unit
    if request.stress_unit:
        opts.stress_unit = request.stress_unit
    opts.key_map = {**opts.key_map, **key_map}


def _not_a_manifest(target: str) -> str:
    """Why a plain path needs --dataset and --task; for a name that is no file either, the
    known manifests."""
    if Path(target).exists():
        return f"{target}: a data path, not a manifest, so pass --dataset and --task"
    return (
        f"{target}: no such file or folder, and no manifest of that name (known: {_known()}); "
        f"a data path also needs --dataset and --task"
    )


def _known() -> str:
    from omni_data.manifest import list_manifests

    return ", ".join(list_manifests())
