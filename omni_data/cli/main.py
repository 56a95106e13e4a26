"""``omni-data``: a table of commands, one module each (``add_arguments(parser)``, ``run(args)``).

A command module is imported only when its command runs, so ``omni-data --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from omni_data.cli.errors import OneLineParser, run_guarded

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("omni_data.cli.ingest", "read a dataset's source files into a sharded store (Dask)"),
    "info": ("omni_data.cli.info", "counts, tasks, elements and bytes of a store"),
    "export": ("omni_data.cli.export", "write a store as extxyz or aselmdb for other trainers"),
    "verify": ("omni_data.cli.verify", "check every shard's sha256 and record counts"),
    "index": ("omni_data.cli.index", "index the store's ids so store.get(id) is one lookup"),
    "convert-store": ("omni_data.cli.convert_store", "rewrite a store of an older store format in the current one"),
    "datasets": ("omni_data.cli.datasets", "list the dataset manifests"),
    "download": ("omni_data.cli.download", "fetch a manifest's files with sha256 check and resume"),
    "references": ("omni_data.cli.references", "fit per-task elemental reference energies"),
    "filter": ("omni_data.cli.filter", "apply manifest filters to a store (drops go to quarantine)"),
    "dedup": ("omni_data.cli.dedup", "find duplicate frames within and across datasets"),
    "split": ("omni_data.cli.split", "assign train/val/test splits by group key"),
    "pairs": ("omni_data.cli.pairs", "cross-task energy shifts on structures labelled by two tasks"),
    "report": ("omni_data.cli.report", "HTML report with plots of a store"),
    "describe": ("omni_data.cli.describe", "compute one descriptor vector per structure"),
    "select-bridge": ("omni_data.cli.select_bridge", "pick the domain-bridging set by farthest-point sampling"),
    "emit-jobs": ("omni_data.cli.emit_jobs", "write DFT recompute job directories for a selection"),
    "run-local": ("omni_data.cli.run_local", "run recompute jobs locally with tblite or PySCF"),
    "collect-bridge": ("omni_data.cli.collect_bridge", "parse finished recompute jobs into the bridge task"),
    "jobs": ("omni_data.cli.jobs", "show the state of recompute jobs"),
    "demo": ("omni_data.cli.demo", "the embedded end-to-end demo: data -> bridge -> train -> evaluate"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="omni-data", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version="omni 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors follow ``omni_data.cli.errors`` (one line, exit 2 usage / 1 runtime)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        build_parser().print_help(sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        return run_guarded("omni-data", lambda: build_parser().parse_args(argv) and 2)
    name = argv[0]

    def command() -> int | None:
        module = importlib.import_module(COMMANDS[name][0])
        cmd_parser = OneLineParser(prog=f"omni-data {name}", description=COMMANDS[name][1])
        module.add_arguments(cmd_parser)
        return module.run(cmd_parser.parse_args(argv[1:]))

    return run_guarded(f"omni-data {name}", command, interrupted="interrupted; re-run the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
