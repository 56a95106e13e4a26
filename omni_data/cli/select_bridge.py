"""``omni-data select-bridge STORE...``: farthest-point (or model-error) selection of the bridge set."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omni_data.select.strategies import Scorer

import argparse
import json

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from omni_data.cli.argtypes import bounded
    from omni_data.pipeline.cluster import add_cluster_arguments
    from omni_data.select.descriptors import DESCRIPTORS
    from omni_data.select.selection import DEVICES, DTYPES, ENGINES, MODES
    from omni_data.select.strategies import STRATEGIES, describe_strategies

    parser.add_argument("stores", nargs="+", help="store directories (described with omni-data describe)")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--fraction", type=float, help="fraction of the candidate structures to pick")
    size.add_argument("--count", type=int, help="number of structures to pick")
    parser.add_argument("--tasks", nargs="+", help="only structures of these tasks")
    parser.add_argument(
        "--min-per-task",
        type=int,
        default=0,
        metavar="N",
        help="every task gets at least N picks (within the same total)",
    )
    parser.add_argument("--seed", type=int, default=0, help="start-point seed (fpsample's rule)")
    parser.add_argument("--strategy", choices=list(STRATEGIES), default="fps", help=describe_strategies())
    parser.add_argument("--model", help="omni_model checkpoint (strategies error and hybrid)")
    parser.add_argument("--pool", type=float, default=4.0, help="hybrid: FPS among pool x k largest errors")
    parser.add_argument("--kind", choices=list(DESCRIPTORS), default="rdf", help="descriptor kind")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="exact",
        help="exact FPS in this process, or the same picks with the shards held by Dask workers (in rounds)",
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="exact FPS on the CPU (numba kernel) or on a GPU (torch engine)",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="torch engine: descriptors stored as this on the device "
        "(float16/bfloat16 halve GPU memory; picks are exact for the rounded values)",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="FPS engine (auto: numba on cpu/float32, torch for cuda or a half dtype)",
    )
    parser.add_argument(
        "--top",
        type=bounded(int, 1),
        default=2048,
        help="distributed: rows each shard reports per round (more: fewer rounds, more traffic)",
    )
    parser.add_argument(
        "--exclude",
        "--seed-from",
        dest="exclude",
        nargs="+",
        default=[],
        metavar="SELECTION.parquet",
        help="earlier selections: never picked again, and FPS continues from them",
    )
    parser.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between progress lines (picks, radius, ETA) on stderr; 0: none",
    )
    from omni_data.cli.argtypes import out_dir

    parser.add_argument(
        "--out", required=True, type=out_dir, help="output folder (selection.parquet, coverage.json/.txt)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (for scripts)")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from omni_data.pipeline.cluster import config_from_args, dask_client
    from omni_data.select.selection import SelectConfig, select_bridge, summary_text
    from omni_data.select.strategies import SCORED

    cfg = SelectConfig(
        stores=list(args.stores),
        out=str(args.out),
        fraction=args.fraction,
        count=args.count,
        tasks=args.tasks,
        min_per_task=args.min_per_task,
        seed=args.seed,
        strategy=args.strategy,
        kind=args.kind,
        mode=args.mode,
        exclude=list(args.exclude),
        pool=args.pool,
        top=args.top,
        progress_every=args.progress_every,
        device=args.device,
        dtype=args.dtype,
        engine=args.engine,
    )
    if args.strategy in SCORED and not args.model:
        raise ValueError(f"strategy {args.strategy!r} needs --model CKPT")
    scorer = _model_scorer(args.model) if args.model else None
    if cfg.mode == "distributed":
        with dask_client(config_from_args(args)) as client:
            summary = select_bridge(cfg, scorer, client)
    else:
        summary = select_bridge(cfg, scorer)
    print(json.dumps(summary, indent=2) if args.json else summary_text(summary))
    return 0


def _model_scorer(checkpoint: str) -> Scorer:
    """The checkpoint's scorer: the CLI is the face that knows both packages (omni_data never
    imports omni_model)."""
    try:
        from omni_model.scorer import model_scorer
    except ImportError as exc:
        raise ImportError("strategy needs omni_model (pip install 'omni[model]')") from exc
    return model_scorer(checkpoint)
