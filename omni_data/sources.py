"""Where a dataset's local copy lives: ``$OMNI_SOURCES`` YAML (name: path) or ``$OMNI_DATA_ROOT/<name>``.

Lets ``omni-data ingest NAME`` run without ``--source`` on a machine where the data is configured,
and lets ``omni-data datasets`` say which databases are present.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

DEFAULT_SOURCES = Path.home() / ".config" / "omni" / "sources.yaml"


def configured_sources() -> dict[str, Path]:
    """The name -> path table from ``$OMNI_SOURCES`` (default ``~/.config/omni/sources.yaml``)."""
    path = Path(os.environ.get("OMNI_SOURCES", DEFAULT_SOURCES))
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of dataset name to path")
    return {str(k): Path(os.path.expanduser(str(v))) for k, v in data.items()}


def local_source(name: str) -> Path | None:
    """The configured local copy of dataset ``name``, if one exists on disk."""
    table = configured_sources()
    if name in table and table[name].exists():
        return table[name]
    root = os.environ.get("OMNI_DATA_ROOT")
    if root and (Path(root) / name).exists():
        return Path(root) / name
    return None
