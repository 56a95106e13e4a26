"""``omni-data datasets``: every manifest with task, level of theory, size, format, licence, local copy."""
from __future__ import annotations

import argparse
import json

from omni_data.manifest import list_manifests, load_manifest, manifest_dir
from omni_data.sources import local_source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _theory(lot: dict) -> str:
    parts = [lot.get("code"), lot.get("functional")]
    if lot.get("basis") and "PAW" not in str(lot.get("basis")):
        parts.append(lot.get("basis"))
    return " / ".join(str(p) for p in parts if p)


def rows() -> list[dict]:
    """One row per manifest; FileNotFoundError when the manifests folder is missing."""
    folder = manifest_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such manifests folder (check $OMNI_MANIFESTS)")
    out = []
    for name in list_manifests():
        m = load_manifest(name)
        local = local_source(name)
        out.append(
            {
                "name": m.name,
                "task": ",".join(m.tasks),
                "level_of_theory": _theory(m.level_of_theory),
                "structures": m.size.get("structures"),
                "format": m.format,
                "licence": m.licence,
                "local": str(local) if local else "",
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    table = rows()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    header = ["name", "task", "level_of_theory", "structures", "format", "licence", "local"]
    cells = [[("{:,}".format(r[h]) if h == "structures" and r[h] else str(r[h] or "-")) for h in header] for r in table]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
    return 0
