"""``omni-data download NAME [--split S ...] [--subset X ...] --out DIR [--dry-run]``: fetch a
dataset's release files with progress, resume and md5/sha256 check (``omni_data.download``)."""

from __future__ import annotations

import argparse

from omni_data.cli.argtypes import out_dir
from omni_data.download import describe_plan, fetch_manifest, human_bytes, plan, size_total
from omni_data.manifest import load_manifest
from omni_data.release_listing import LOCK_NAME, ListingError, release_files

__all__ = ["add_arguments", "run"]

INTERRUPTED = "interrupted; re-run the same command to resume"
"""Ctrl-C's line (``omni_data.cli.main``): a partly fetched file continues where it stopped."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="dataset name (see omni-data datasets) or manifest YAML path")
    parser.add_argument(
        "--split",
        action="extend",
        nargs="+",
        default=[],
        metavar="SPLIT",
        help="only files of these splits (train, val, test, all as the publisher lists them)",
    )
    parser.add_argument(
        "--subset",
        action="extend",
        nargs="+",
        default=[],
        metavar="SUBSET",
        help="only files of these subsets (e.g. OMat24 rattled-300)",
    )
    parser.add_argument(
        "--out", type=out_dir, metavar="DIR", help="folder to download into (required unless --dry-run)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the files and their total size (~ marks a publisher's rounded size); fetch nothing",
    )
    parser.add_argument(
        "--refresh-listing",
        action="store_true",
        help=f"read the publisher's file list again instead of the one pinned in DIR/{LOCK_NAME} "
        "(manifests with a 'listing', e.g. qcml, mp_r2scan, mad)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.name)
    if args.out is None and not args.dry_run:
        raise ValueError("--out DIR is required (or --dry-run to see what would be fetched)")
    # A download pins the publisher's list in DIR so a re-run fetches the same files; a dry run pins nothing.
    try:
        listed, origin = release_files(manifest, args.out, args.refresh_listing, pin=not args.dry_run)
    except ListingError as exc:
        if not (args.dry_run and manifest.files):
            raise ListingError(f"manifest {manifest.name}: could not read the publisher's file list: {exc}") from exc
        listed, origin = list(manifest.files), f"the manifest (the publisher's list could not be read: {exc})"
    files = plan(manifest, tuple(args.split), tuple(args.subset), listed)  # an unknown split/subset: exit 2
    if manifest.listing is not None:
        pinned = "" if args.dry_run or origin.startswith("pinned") else f", pinned in {args.out / LOCK_NAME}"
        print(f"files from {origin}{pinned}", flush=True)
    if args.dry_run:
        print("\n".join(describe_plan(files, args.out)))
        return 0
    from tqdm import tqdm

    sizes = size_total(files)  # the bar's total counts rounded sizes too; only exact ones are checked
    total = sizes.bytes if sizes.bytes and not sizes.unknown else None
    with tqdm(total=total, unit="B", unit_scale=True, desc=manifest.name, disable=args.no_progress) as bar:
        fetched = fetch_manifest(manifest, args.out, bar.update, tuple(args.split), tuple(args.subset), listed)
    for f in fetched:  # a DownloadError above ends the command with one line, exit 1
        state = (
            "already present" if f.skipped else (f"resumed at {f.resumed_from} B" if f.resumed_from else "downloaded")
        )
        print(f"{f.path}  {human_bytes(f.bytes)}  {f.algorithm} {f.digest}  ({state})")
    return 0
