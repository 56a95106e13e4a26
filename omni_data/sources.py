"""Where a dataset's local copy lives: ``$OMNI_SOURCES`` YAML (name: path) or ``$OMNI_DATA_ROOT/<name>``.

Lets ``omni-data ingest NAME`` run without ``--source`` on a machine where the data is configured,
and lets ``omni-data datasets`` say which databases are present.
"""

from __future__ import annotations

import os
from pathlib import Path

from omni_data.manifest import ManifestError
from omni_data.yamlfile import load_yaml

__all__ = ["configured_sources", "local_source"]

DEFAULT_SOURCES = Path.home() / ".config" / "omni" / "sources.yaml"


def configured_sources() -> dict[str, Path]:
    """The name -> path table from ``$OMNI_SOURCES`` (default ``~/.config/omni/sources.yaml``);
    a file that is not valid YAML or not a ``name: path`` mapping raises ``ManifestError``
    naming the file and line."""
    path = Path(os.environ.get("OMNI_SOURCES", DEFAULT_SOURCES))
    if not path.is_file():
        return {}
    data = load_yaml(path, ManifestError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ManifestError(
            f"{path}:1: expected a mapping of dataset name to path "
            f"(e.g. 'omat24: /data/omat24'), got a {type(data).__name__}"
        )
    for name, value in data.items():
        if not isinstance(value, str) or not value:
            raise ManifestError(f"{path}: key {str(name)!r}: expected a path, got {value!r}")
    return {str(k): Path(os.path.expanduser(v)) for k, v in data.items()}


def local_source(name: str) -> Path | None:
    """The configured local copy of dataset ``name``, if one exists on disk."""
    table = configured_sources()
    if name in table and table[name].exists():
        return table[name]
    root = os.environ.get("OMNI_DATA_ROOT")
    if root and (Path(root) / name).exists():
        return Path(root) / name
    return None
