"""``omni-train``: train from a YAML config, evaluate a checkpoint on a store, print a preset.

    omni-train CONFIG.yaml [--store PATH [--store PATH ...]] [--out DIR]
    omni-train evaluate CKPT STORE [STORE ...] [--task T ...] [--split val]
    omni-train preset NAME            (or ``omni-train preset`` to list them)
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _train(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="omni-train", description="Train an Omni potential from a YAML config.")
    p.add_argument("config", help="YAML file (see docs/train-config.md) or a preset name")
    p.add_argument("--store", action="append", default=[],
                   help="override data.store; repeat to train on several stores read as one")
    p.add_argument("--out", help="override run.out_dir")
    args = p.parse_args(argv)
    import dataclasses

    from .config import load_config, validate
    from .train.trainer import train

    cfg = load_config(args.config)
    if args.store:
        store = args.store[0] if len(args.store) == 1 else list(args.store)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, store=store))
    if args.out:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=args.out))
    validate(cfg, args.config)
    trainer = train(cfg)
    if trainer.dist.is_main:
        print(f"done: {trainer.step} steps, checkpoint {Path(cfg.run.out_dir) / 'final.pt'}")
    return 0


def _evaluate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="omni-train evaluate", description="Per-task errors of a checkpoint on a store.")
    p.add_argument("checkpoint")
    p.add_argument("store", nargs="+", help="one or more stores (several are read as one)")
    p.add_argument("--task", action="append", default=[], help="only these tasks (repeatable)")
    p.add_argument("--split", default="", help="only records of this split (train/val/test) when the store has splits")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--no-ema", action="store_true")
    args = p.parse_args(argv)
    import numpy as np

    from .data.dataset import GraphDataset, open_store, store_columns
    from .train.checkpoint import load_model
    from .train.validate import evaluate, format_errors

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
    return 0


def _preset(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="omni-train preset", description="Print a packaged config preset.")
    p.add_argument("name", nargs="?")
    args = p.parse_args(argv)
    from .config import PRESETS_DIR, list_presets

    if not args.name:
        print("\n".join(list_presets()))
        return 0
    if args.name not in list_presets():
        print(f"unknown preset {args.name!r}; available: {', '.join(list_presets())}", file=sys.stderr)
        return 2
    sys.stdout.write((PRESETS_DIR / f"{args.name}.yaml").read_text())
    return 0


COMMANDS = {"evaluate": _evaluate, "preset": _preset}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    handler = COMMANDS.get(argv[0])
    try:
        return handler(argv[1:]) if handler else _train(argv)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"omni-train: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
