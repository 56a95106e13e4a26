"""``omni-train``: train from a YAML config, evaluate a checkpoint on a store, print a preset.

    omni-train train CONFIG [--store PATH [--store PATH ...]] [--out DIR] [--threads N]
    omni-train evaluate CKPT STORE [STORE ...] [--task T ...] [--split val] [--threads N]
    omni-train preset NAME            (or ``omni-train preset`` to list them)
    omni-train CONFIG.yaml ...        (shortcut for ``omni-train train CONFIG.yaml ...``)

A table of commands like ``omni-data``'s; errors follow ``omni_data.cli.errors`` (one line
``omni-train CMD: error: ...``, exit 2 for usage, 1 for runtime; Ctrl-C one line, exit 130).
Training shows its progress (``omni_model.train.progress``): a bar on a terminal, else a line
``step N/M (p%)  stage S  loss L  elapsed T  ETA T`` every ``run.log_every`` steps.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from omni_data.cli.argtypes import bounded, out_dir
from omni_data.cli.errors import OneLineParser, UsageError, run_guarded

__all__ = ["add_threads_argument", "build_parser", "is_config_shortcut", "main", "configure_logging"]

THREADS_HELP = (
    "torch CPU threads (default: $OMP_NUM_THREADS if set, else 1: torch's default of one "
    "spinning thread per core made training 15-20x slower on a 2-core machine with one other "
    "busy process)"
)


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    """The ``--threads N`` option of train and evaluate."""
    p.add_argument("--threads", type=bounded(int, 1), default=None, metavar="N", help=THREADS_HELP)


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML file (see docs/train-config.md) or a preset name")
    p.add_argument(
        "--store",
        action="append",
        default=[],
        help="override data.store; repeat to train on several stores read as one",
    )
    p.add_argument("--out", type=out_dir, help="override run.out_dir (a new or existing folder)")
    add_threads_argument(p)


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    from .config import load_config, validate
    from .threads import set_threads
    from .train.trainer import train

    set_threads(args.threads)  # before any torch work
    cfg = load_config(args.config)
    if args.store:
        store = args.store[0] if len(args.store) == 1 else list(args.store)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, store=store))
    if args.out:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(args.out)))
    validate(cfg, args.config)
    trainer = train(cfg)
    if trainer.dist.is_main:
        print(f"done: {trainer.step} steps, checkpoint {Path(cfg.run.out_dir) / 'final.pt'}")
    return 0


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint")
    p.add_argument("store", nargs="+", help="one or more stores (several are read as one)")
    p.add_argument("--task", action="append", default=[], help="only these tasks (repeatable)")
    p.add_argument("--split", default="", help="only records of this split (train/val/test) when the store has splits")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--no-ema", action="store_true")
    p.add_argument(
        "--calibration-split",
        default="",
        help="fit per-element energy offsets on this split "
        "(disjoint from --split) and also report the energy errors that remain after them",
    )
    p.add_argument("--head", help="predict every record with this task's head (default: each record's own)")
    p.add_argument(
        "--seed-checkpoint",
        action="append",
        default=[],
        metavar="CKPT",
        help="the same setup trained with another seed (repeatable): also evaluated, and mean ± std over "
        "all checkpoints printed per (head, data) row",
    )
    add_threads_argument(p)


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .data.dataset import GraphDataset, open_store, store_columns
    from .threads import set_threads
    from .train.checkpoint import load_model
    from .train.validate import evaluate, format_errors

    set_threads(args.threads)  # before any torch work

    model, _, _ = load_model(args.checkpoint, use_ema=not args.no_ema)
    store = open_store(args.store)
    cols = store_columns(store)
    tasks = args.task or model.tasks
    for t in tasks:
        model.task_index(t)
    idx = np.flatnonzero(np.isin(cols["task"], tasks))
    if args.split:
        from omni_data.harmonize.splits import split_of

        idx = idx[split_of(store)[idx] == args.split]
    ds = GraphDataset(store, idx, model.cfg.cutoff, model.elements, model.tasks, cols["task"], cache=False)
    errors = evaluate(model, ds, model.tasks, args.batch_size)
    print(format_errors(errors))
    from .evaluation.transfer import evaluate_checkpoint, format_evaluation

    print()  # raw and offset-aligned energy errors and forces per (head, data domain)
    evs = [
        evaluate_checkpoint(
            ckpt,
            args.store,
            args.task,
            args.split,
            args.calibration_split,
            args.head,
            args.batch_size,
            not args.no_ema,
        )
        for ckpt in [args.checkpoint, *args.seed_checkpoint]
    ]
    print(format_evaluation(evs[0]))
    if len(evs) > 1:
        from .evaluation.transfer import format_seed_summary, seed_summary

        print()
        print(f"over {len(evs)} checkpoints: {', '.join(ev.checkpoint for ev in evs)}")
        print(format_seed_summary(seed_summary(evs)))
    return 0


def _preset_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="preset to print (left out: list them)")


def _preset(args: argparse.Namespace) -> int:
    from .config import PRESETS_DIR, list_presets

    if not args.name:
        print("\n".join(list_presets()))
        return 0
    if args.name not in list_presets():
        raise ValueError(f"unknown preset {args.name!r}; available: {', '.join(list_presets())}")
    sys.stdout.write((PRESETS_DIR / f"{args.name}.yaml").read_text())
    return 0


Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]

# what Ctrl-C prints, per command (``omni-train CMD: ...``)
INTERRUPTED = {
    "train": "interrupted; the same command resumes from the last checkpoint-last.pt, if one was "
    "written (every run.checkpoint_every steps)"
}

# name -> (add_arguments, run, one-line help), like omni_data.cli.main.COMMANDS
COMMANDS: dict[str, Command] = {
    "train": (_train_arguments, _train, "train an Omni potential from a YAML config (or a preset name)"),
    "evaluate": (_evaluate_arguments, _evaluate, "per-task errors of a checkpoint on one or more stores"),
    "preset": (_preset_arguments, _preset, "list the packaged config presets, or print one"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: its help lists the commands."""
    parser = OneLineParser(
        prog="omni-train",
        description="Train an Omni potential, evaluate a checkpoint, print a preset.",
        epilog="omni-train CONFIG.yaml ... is short for omni-train train CONFIG.yaml ...",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_add, _run, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def is_config_shortcut(first: str) -> bool:
    """``omni-train CONFIG.yaml``: an existing .yaml/.yml file that is not a command name."""
    return first not in COMMANDS and first.endswith((".yaml", ".yml")) and Path(first).is_file()


def _not_a_command(argv: list[str]) -> int:
    """``--help``/``--version`` or a first word that is neither a command nor a config file: say which."""
    first = argv[0]
    if first.endswith((".yaml", ".yml")):
        raise FileNotFoundError(f"{first}: no such config file")
    if not first.startswith("-"):
        raise UsageError(
            f"unknown command {first!r}; commands: {', '.join(COMMANDS)} (a preset trains with: omni-train train NAME)"
        )
    build_parser().parse_args(argv)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors follow ``omni_data.cli.errors`` (one line, exit 2 usage / 1 runtime)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    if argv and is_config_shortcut(argv[0]):
        argv = ["train", *argv]
    if not argv:
        build_parser().print_help(sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        return run_guarded("omni-train", lambda: _not_a_command(argv))
    name = argv[0]
    add_arguments, run, help_text = COMMANDS[name]

    def command() -> int:
        parser = OneLineParser(prog=f"omni-train {name}", description=help_text)
        add_arguments(parser)
        return run(parser.parse_args(argv[1:]))

    return run_guarded(f"omni-train {name}", command, interrupted=INTERRUPTED.get(name, "interrupted"))


def configure_logging() -> None:
    """Omni's own messages at INFO on stderr; other libraries' only from WARNING (torch logs its
    FakeTensor cache statistics at INFO when the process exits)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("omni_model", "omni_data"):
        logging.getLogger(name).setLevel(logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
