"""``omni-data datasets``: every manifest with task, level of theory, size, download size, format,
licence and local copy."""

from __future__ import annotations

import argparse
import json

from omni_data.download import human_bytes, size_total
from omni_data.manifest import list_manifests, load_manifest, manifest_dir
from omni_data.sources import local_source

__all__ = ["add_arguments", "rows", "download_cell", "run"]


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
        sizes = size_total(m.files)
        out.append(
            {
                "name": m.name,
                "task": ",".join(m.tasks),
                "level_of_theory": _theory(m.level_of_theory),
                "structures": m.size.get("structures"),
                "files": len(m.files),
                "download_bytes": m.download_bytes,
                "download_known": sum(f.size_bytes is not None for f in m.files),
                "download_known_bytes": sum(f.size_bytes or 0 for f in m.files),
                "download_approx": sizes.approx,
                "download_estimate_bytes": sizes.bytes,
                "listing": m.listing.api if m.listing else "",
                "format": m.format,
                "licence": m.licence,
                "local": str(local) if local else "",
            }
        )
    return out


def download_cell(row: dict) -> str:
    """``12.3 GB`` (all sizes exact), ``~233.4 GB`` (some only rounded by the publisher), ``>= 1.2 GB (3/5
    sizes)`` or ``>= ~1.2 GB (3/5 sizes)`` (some unknown), ``? (2 files)`` or ``? (1 file, sized by s3
    at download)``, ``listed by figshare`` (the publisher's API lists the files when ``download``
    runs) or ``-`` (no files listed)."""
    if not row["files"]:
        return f"listed by {row['listing']}" if row.get("listing") else "-"
    if row["download_bytes"] is not None:
        return human_bytes(row["download_bytes"])
    n, sized = row["files"], row["download_known"] + row["download_approx"]
    if not sized:
        by = f", sized by {row['listing']} at download" if row.get("listing") else ""
        return f"? ({n} file{'s' if n != 1 else ''}{by})"
    total = f"{'~' if row['download_approx'] else ''}{human_bytes(row['download_estimate_bytes'])}"
    return total if sized == n else f">= {total} ({sized}/{n} sizes)"


def _cell(row: dict, header: str) -> str:
    if header == "download":
        return download_cell(row)
    if header == "structures" and row[header]:
        return f"{row[header]:,}"
    return str(row[header] or "-")


def run(args: argparse.Namespace) -> int:
    table = rows()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    header = ["name", "task", "level_of_theory", "structures", "download", "format", "licence", "local"]
    cells = [[_cell(r, h) for h in header] for r in table]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
    return 0
