"""``omni-data download NAME --out DIR``: fetch a manifest's files with sha256 check and resume."""
from __future__ import annotations

import argparse
from pathlib import Path

from omni_data.download import fetch_manifest
from omni_data.manifest import load_manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="manifest name (see omni-data datasets) or manifest YAML path")
    parser.add_argument("--out", required=True, type=Path, help="directory to download into")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    manifest = load_manifest(args.name)
    total = sum(f.size_bytes or 0 for f in manifest.files) or None
    with tqdm(total=total, unit="B", unit_scale=True, desc=manifest.name) as bar:
        fetched = fetch_manifest(manifest, args.out, progress=bar.update)  # DownloadError: exit 1
    for f in fetched:
        state = "already present" if f.skipped else (f"resumed at {f.resumed_from} B" if f.resumed_from else "downloaded")
        print(f"{f.path}  {f.bytes} B  sha256 {f.sha256}  ({state})")
    return 0
