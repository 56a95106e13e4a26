"""``omni-data info STORE``: records, atoms, tasks, datasets, elements, quarantine and bytes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "store_info", "bridge_protocols", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="store directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def store_info(store: Path) -> dict[str, Any]:
    """The catalog's counts plus bytes per format and the last run's provenance."""
    from omni_data.store.catalog import Catalog

    if not (Path(store) / "catalog.json").is_file():
        raise FileNotFoundError(f"{store}: not a store (no catalog.json)")
    catalog = Catalog(store)
    by_format: dict[str, int] = {}
    for shard in catalog.shards:
        for fmt, meta in shard["files"].items():
            by_format[fmt] = by_format.get(fmt, 0) + int(meta["bytes"])
        if shard.get("quarantine"):
            by_format["quarantine"] = by_format.get("quarantine", 0) + int(shard["quarantine"]["bytes"])
    segments = (catalog.sections.get("id_index") or {}).get("segments", [])
    if segments:
        by_format["id_index"] = sum(int(seg["bytes"]) for seg in segments)
    names = {s["name"] for s in catalog.shards}
    covered = {n for seg in segments for n in seg["shards"]} & names
    runs = catalog.runs
    from omni_data.pipeline.coverage import store_coverage

    labels, uncounted = store_coverage(catalog.shards)
    return {
        "bridge_provenance": bridge_protocols(catalog.sections.get("bridge_provenance") or {}),
        "store": str(store),
        "schema_version": catalog.data["schema_version"],
        **catalog.counts,
        "bytes": by_format,
        "sections": sorted(catalog.sections),
        "id_index": {"segments": len(segments), "shards_covered": len(covered), "shards": len(names)},
        "labels": labels,
        "labels_uncounted_shards": uncounted,
        "runs": len(runs),
        "last_run": {k: runs[-1].get(k) for k in ("kind", "status", "finished", "dataset", "task")} if runs else None,
    }


def bridge_protocols(section: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The collected bridge records summed over shards by (protocol, sha256, engine, code version)."""
    keys = ("protocol", "protocol_sha256", "engine", "code_version")
    totals: dict[tuple[str, ...], int] = {}
    for groups in section.values():
        for g in groups:
            key = tuple(str(g.get(k, "")) for k in keys)
            totals[key] = totals.get(key, 0) + int(g["records"])
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{**dict(zip(keys, key)), "records": n} for key, n in ordered]


def run(args: argparse.Namespace) -> int:
    from omni_data.cli.errors import runtime_phase

    with runtime_phase():  # a damaged catalog is exit 1, like a missing store
        info = store_info(args.store)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"{info['store']}: {info['records']:,} records, {info['atoms']:,} atoms in {info['shards']} shards")
    for key in ("by_task", "by_dataset"):
        print(f"  {key[3:]}s: " + ", ".join(f"{k} {v:,}" for k, v in info[key].items()))
    from omni_data.pipeline.coverage import line

    for dataset, counts in info["labels"].items():
        print(f"  labels {line(dataset, counts)}")
    if info["labels_uncounted_shards"]:
        print(
            f"  labels: {info['labels_uncounted_shards']} shard(s) carry no label counts (written before "
            f"Omni counted them, or by another command)"
        )
    print(f"  elements ({len(info['by_element'])}): " + " ".join(f"{k}:{v}" for k, v in info["by_element"].items()))
    reasons = ", ".join(f"{k} {v:,}" for k, v in info["quarantined_by_reason"].items())
    print(f"  quarantined: {info['quarantined']:,}" + (f" ({reasons})" if reasons else ""))
    print("  bytes: " + ", ".join(f"{k} {v / 1e6:,.1f} MB" for k, v in info["bytes"].items()))
    ids = info["id_index"]
    hint = "" if ids["shards_covered"] == ids["shards"] else " (run `omni-data index` to cover the rest)"
    print(f"  id index: {ids['segments']} segment(s), covers {ids['shards_covered']} of {ids['shards']} shards{hint}")
    protocols = info["bridge_provenance"]
    for g in protocols:
        print(
            f"  bridge: {g['records']:,} records by {g['protocol']}@{g['protocol_sha256'][:12]}"
            f" ({g['engine']} {g['code_version']})".rstrip()
        )
    if len({(g["protocol"], g["protocol_sha256"]) for g in protocols}) > 1:
        print(
            "  WARNING: the bridge records come from more than one protocol version: they are not one level of theory"
        )
    if info["sections"]:
        print(f"  sections: {', '.join(info['sections'])}")
    return 0
