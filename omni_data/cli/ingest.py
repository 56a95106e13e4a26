"""``omni-data ingest NAME|PATH --source PATH --out STORE``: read a dataset into a sharded store.

NAME is a manifest name (``manifests/NAME.yaml``) or a manifest YAML path; a plain data PATH
works too with ``--format`` (or a sniffed format) and ``--dataset``/``--task``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from omni_data.pipeline.cluster import add_cluster_arguments, config_from_args
from omni_data.store.writer import FORMATS, LEGACY_FORMATS

if TYPE_CHECKING:
    from omni_data.pipeline.ingest import IngestSummary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="NAME|PATH", help="manifest name, manifest .yaml, or a data file/folder")
    parser.add_argument("--source", type=Path, help="where the source files are (file or folder); default: PATH")
    parser.add_argument("--out", type=Path, required=True, metavar="STORE", help="store directory (created if new)")
    parser.add_argument("--format", help="reader name (default: the manifest's, else sniffed from the file)")
    parser.add_argument("--dataset", help="dataset name (plain PATH mode; overrides the manifest)")
    parser.add_argument("--task", help="task name, e.g. the level of theory (plain PATH mode; overrides the manifest)")
    parser.add_argument("--energy-unit", default=None, help="source energy unit in plain PATH mode (default eV)")
    parser.add_argument("--shard-size", type=int, default=10_000, metavar="N", help="records per shard (default 10000)")
    parser.add_argument("--shard-formats", default=",".join(FORMATS),
                        help="kept for scripts of store format 1 (arrow,lmdb): every shard is now written as "
                             "LMDB records + Parquet columns")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-id-index", action="store_true",
                        help="skip indexing the new shards' ids at the end (store.get(id) then asks each new "
                             "shard; run `omni-data index STORE` later)")
    add_cluster_arguments(parser)


def _is_manifest(target: str) -> bool:
    """A manifest path, name or alias (``omat`` -> ``omat24``) that is not also an existing data path."""
    from omni_data.manifest import ManifestError, list_manifests, load_manifest

    if target.endswith((".yaml", ".yml")) or (not Path(target).exists() and target in list_manifests()):
        return True
    if Path(target).exists() or Path(target).suffix:
        return False
    try:
        load_manifest(target)  # resolves aliases
    except ManifestError as exc:
        if "no such manifest" in str(exc):
            return False
        raise  # a broken manifest is named, not mistaken for a data path
    return True


def _default_source(m) -> Path:
    """``--source`` left out: the configured local copy (``omni_data.sources.local_source``)."""
    from omni_data.sources import local_source

    for name in dict.fromkeys([m.name, m.dataset, *m.aliases]):
        found = local_source(name)
        if found is not None:
            return found
    raise ValueError(f"manifest {m.name}: pass --source PATH (where its files {', '.join(m.globs) or m.format} are), "
                     f"or configure it as $OMNI_DATA_ROOT/{m.name} or in the $OMNI_SOURCES YAML ({m.name}: PATH)")


def build_spec(args: argparse.Namespace):
    """The ``IngestSpec`` the options describe; ValueError naming the missing option otherwise."""
    from omni_data.pipeline.ingest import IngestSpec
    from omni_data.readers import ReadOptions, sniff

    formats = tuple(f.strip() for f in args.shard_formats.split(",") if f.strip())
    if not formats or set(formats) - set(FORMATS) - set(LEGACY_FORMATS):
        raise ValueError(f"--shard-formats must list some of {', '.join(FORMATS)}, got {args.shard_formats!r}")
    if args.shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {args.shard_size}")
    if _is_manifest(args.target):
        from omni_data.manifest import load_manifest

        m = load_manifest(args.target)
        source = args.source if args.source is not None else _default_source(m)
        opts = m.read_options()
        opts.dataset = args.dataset or opts.dataset
        opts.task = args.task or opts.task
        return IngestSpec(store=args.out, reader=args.format or m.format, source=source, options=opts,
                          globs=m.globs or None, filters=m.filters, shard_size=args.shard_size, formats=formats,
                          manifest={"name": m.name, "path": m.path}, command=["omni-data", "ingest", *sys.argv[2:]])
    source = args.source or Path(args.target)
    if not args.dataset or not args.task:
        raise ValueError(f"{args.target}: not a manifest, so pass --dataset and --task")
    from omni_data.cli.errors import must_exist

    must_exist(source, "source path")  # exit 1, before a sniff of nothing says "pass --format"
    reader = args.format or sniff(source if source.is_file() else Path(args.target))
    opts = ReadOptions(dataset=args.dataset, task=args.task, energy_unit=args.energy_unit or "eV")
    return IngestSpec(store=args.out, reader=reader, source=source, options=opts, shard_size=args.shard_size,
                      formats=formats, command=["omni-data", "ingest", *sys.argv[2:]])


def all_quarantined_message(source: Path, summary: "IngestSummary") -> str:
    """One line for a run that stored nothing: the top quarantine reason and its count."""
    top = summary.top_reason()
    why = "" if top is None else f"; top reason {top[0]} ({top[1]} records), e.g. {top[2]!r}"
    return (f"{source}: all {summary.read} records read were quarantined, none stored{why}; "
            f"see the store's quarantine/ for every reason")


def run(args: argparse.Namespace) -> int:
    from omni_data.cli.errors import runtime_phase
    from omni_data.pipeline.cluster import dask_client
    from omni_data.pipeline.ingest import ingest

    spec = build_spec(args)  # a bad option or manifest: exit 2 (omni_data.cli.errors)
    config = config_from_args(args)
    print(f"ingest {spec.source} ({spec.reader}) as {spec.options.dataset}/{spec.options.task} -> {spec.store} "
          f"[{config.mode}{'' if config.mode != 'local' else f', {config.n_workers} workers'}]", file=sys.stderr)
    from omni_data.pipeline.archives import stage_source

    with runtime_phase("cannot extract"):  # exc names the archive
        staged = stage_source(spec.source, spec.store, spec.reader, spec.globs)
    if staged != spec.source:
        print(f"extracted {spec.source} -> {staged}", file=sys.stderr)
        spec.source = staged
    with runtime_phase(), dask_client(config) as client:  # a ReaderError is exit 1 too
        if client is not None:
            print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
        summary = ingest(spec, client=client, progress=not args.no_progress)
    for line in summary.lines():
        print(line)
    if summary.all_quarantined:
        print(f"omni-data ingest: error: {all_quarantined_message(spec.source, summary)}", file=sys.stderr)
        return 1
    if not args.no_id_index:
        from omni_data.store.idindex import build_id_index

        with runtime_phase("id index"):
            print(build_id_index(spec.store, progress=not args.no_progress).line())
    return 0 if summary.ok else 1
