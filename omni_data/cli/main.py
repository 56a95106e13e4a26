"""``omni-data``: a table of commands, one module each (``add_arguments(parser)``, ``run(args)``,
and optionally ``INTERRUPTED``, the line printed after ``omni-data NAME: `` on Ctrl-C).

A command module is imported only when its command runs, so ``omni-data --help`` stays fast.
Ctrl-C prints ``INTERRUPTED`` of the module (default ``interrupted``): only a command whose
re-run really resumes (ingest, download, run-local, ...) says so.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from omni_data.cli.errors import OneLineParser, run_guarded

__all__ = ["build_parser", "main", "interrupted_message"]

DEFAULT_INTERRUPTED = "interrupted"
"""Ctrl-C's line for a command whose module defines no ``INTERRUPTED`` (it leaves nothing to resume)."""

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("omni_data.cli.ingest", "read a dataset's source files into a sharded store (Dask)"),
    "info": ("omni_data.cli.info", "counts, tasks, elements and bytes of a store"),
    "export": ("omni_data.cli.export", "write a store as extxyz or aselmdb for other trainers"),
    "verify": ("omni_data.cli.verify", "check every shard's sha256 and record counts"),
    "index": ("omni_data.cli.index", "index the store's ids so store.get(id) is one lookup"),
    "datasets": ("omni_data.cli.datasets", "list known datasets: size, download size, licence, local copy"),
    "download": ("omni_data.cli.download", "fetch a dataset's release files (resume, checksums, --dry-run)"),
    "manifest": ("omni_data.cli.manifest", "draft a manifest from your own file, or check one"),
    "convert-store": ("omni_data.cli.convert_store", "rewrite a store of an older store format in the current one"),
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


DESCRIPTION = """\
Gather atomistic datasets (public ones and your own files) into one store of
energies, forces and stresses, pick a bridging set to recompute, and export it
for training."""
EPILOG = """first steps:
  omni-data datasets                                  what is known, and what is on this machine
  omni-data download NAME --out DIR                   fetch a dataset's release files
  omni-data ingest NAME --source DIR --out STORE      read them into a store
  omni-data manifest draft FILE --out my.yaml         describe your own file, then ingest my.yaml
  omni-data info STORE                                what the store holds

`omni-data COMMAND --help` explains each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="omni-data", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    prog = f"omni-data {name}"
    loaded: list[ModuleType] = []
    status = run_guarded(prog, lambda: loaded.append(importlib.import_module(COMMANDS[name][0])))
    if not loaded:  # a missing dependency or Ctrl-C while importing: one line already printed
        return status
    module = loaded[0]

    def command() -> int | None:
        cmd_parser = OneLineParser(prog=prog, description=COMMANDS[name][1])
        module.add_arguments(cmd_parser)
        return module.run(cmd_parser.parse_args(argv[1:]))

    return run_guarded(prog, command, interrupted=interrupted_message(module))


def interrupted_message(module: ModuleType) -> str:
    """What Ctrl-C prints for a command: its module's ``INTERRUPTED``, else ``interrupted``."""
    text = getattr(module, "INTERRUPTED", DEFAULT_INTERRUPTED)
    return text if isinstance(text, str) and text.strip() else DEFAULT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
