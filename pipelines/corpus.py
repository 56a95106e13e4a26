#!/usr/bin/env python
"""Read pipelines/config/corpus.yaml for the Slurm scripts: dataset list, settings, train config.

The batch scripts never parse YAML in bash; they ask this script one question at a time::

    python pipelines/corpus.py count --ingest          # how many datasets the ingest array covers
    python pipelines/corpus.py dataset 3               # "omat24<TAB>/data/omat24" for array index 3
    python pipelines/corpus.py get bridge.fraction     # one setting
    python pipelines/corpus.py train-config --out train.yaml   # omni-train YAML with the curriculum

``$OMNI_CORPUS`` picks the YAML (default: config/corpus.yaml beside this file); ``$OMNI_DATA_ROOT``
and ``$OMNI_WORK`` override ``data_root`` and ``work_dir``. The file is read through
``omni_data.typedconfig``: unknown or missing keys and wrong types are one error naming the file
and every key.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml

from omni_data.typedconfig import Check, from_mapping
from omni_data.yamlfile import load_yaml

DEFAULT = Path(__file__).resolve().parent / "config" / "corpus.yaml"


def _non_negative(value: float) -> None:
    if not value >= 0:
        raise ValueError(f"must be a number >= 0, got {value!r}")


@dataclass
class Dataset:
    name: str
    source: str
    tasks: list[str]
    weight: Annotated[float, Check(_non_negative)]
    recomputed: bool = False


@dataclass
class IngestSettings:
    """Dask-jobqueue settings of the ingest array (every key required)."""

    shard_size: int
    jobs: int
    cores_per_job: int
    processes_per_job: int
    memory: str
    walltime: str
    max_parallel_datasets: int


@dataclass
class BridgeSettings:
    """How the bridge set is selected and recomputed (every key required)."""

    fraction: float
    min_per_task: int
    descriptor: str
    protocol: str
    jobs_per_array_task: int
    array_parallel: int


@dataclass
class StageSettings:
    name: str
    datasets: list[str]
    epochs: int = 0
    steps: int = 0


@dataclass
class TrainSettings:
    preset: str
    nodes: int
    gpus_per_node: int
    task_l2: float
    stages: list[StageSettings]


@dataclass
class CorpusFile:
    """The corpus YAML as written (``omni_data.typedconfig`` checks keys and types)."""

    data_root: str
    work_dir: str
    store: str
    ingest: IngestSettings
    datasets: list[Dataset]
    bridge: BridgeSettings
    train: TrainSettings


@dataclass
class Corpus:
    path: str
    data_root: str
    work_dir: str
    store: str
    ingest: dict[str, Any]
    datasets: list[Dataset]
    bridge: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)

    def ingest_datasets(self) -> list[Dataset]:
        """The datasets read from public files (the bridge is recomputed, then collected)."""
        return [d for d in self.datasets if not d.recomputed]

    def resolve(self, base: str, rel: str) -> str:
        return rel if os.path.isabs(rel) else os.path.join(base, rel)

    @property
    def store_path(self) -> str:
        return self.resolve(self.work_dir, self.store)


def _cross_problems(data: Any) -> list[str]:
    """Problems across keys: repeated dataset names, stages naming unknown datasets, epochs xor steps."""
    if not isinstance(data, dict):
        return []
    names = [d.get("name") for d in data.get("datasets") or [] if isinstance(d, dict)]
    problems = [f"key 'datasets': dataset names repeat: {names}"] if len(set(names)) != len(names) else []
    stages = (data.get("train") or {}).get("stages") if isinstance(data.get("train"), dict) else None
    for i, stage in enumerate(stages if isinstance(stages, list) else []):
        if not isinstance(stage, dict):
            continue
        unknown = set(stage.get("datasets") or []) - set(names)
        if unknown:
            problems.append(f"key 'train.stages[{i}].datasets': unknown {sorted(unknown)}")
        if bool(stage.get("epochs")) == bool(stage.get("steps")):
            problems.append(f"key 'train.stages[{i}]' needs exactly one of epochs or steps")
    return problems


def load_corpus(path: str | Path | None = None) -> Corpus:
    """Parse and validate the corpus YAML; environment overrides for data_root and work_dir."""
    path = Path(path or os.environ.get("OMNI_CORPUS") or DEFAULT)
    data = load_yaml(path, ValueError)
    parsed = from_mapping(CorpusFile, data, str(path), ValueError, extra=_cross_problems(data))
    return Corpus(
        path=str(path),
        data_root=os.environ.get("OMNI_DATA_ROOT") or parsed.data_root,
        work_dir=os.environ.get("OMNI_WORK") or parsed.work_dir,
        store=parsed.store,
        ingest=asdict(parsed.ingest),
        datasets=parsed.datasets,
        bridge=asdict(parsed.bridge),
        train=asdict(parsed.train),
    )


def stage_configs(corpus: Corpus) -> list[dict[str, Any]]:
    """omni-train ``stages``: each dataset list turned into tasks with summed sampling weights."""
    by_name = {d.name: d for d in corpus.datasets}
    stages = []
    for stage in corpus.train["stages"]:
        weights: dict[str, float] = {}
        for name in stage["datasets"]:
            ds = by_name[name]
            for task in ds.tasks:  # a dataset split over several tasks shares its weight
                weights[task] = weights.get(task, 0.0) + ds.weight / len(ds.tasks)
        out = {"name": stage["name"], "tasks": list(weights), "weights": {k: round(v, 4) for k, v in weights.items()}}
        out["epochs" if stage.get("epochs") else "steps"] = int(stage.get("epochs") or stage["steps"])
        stages.append(out)
    return stages


def train_config(corpus: Corpus, out_dir: str) -> dict[str, Any]:
    """The omni-train YAML for the corpus: the preset, overlaid with store, tasks and curriculum."""
    preset: dict[str, Any] = {}
    try:
        from omni_model.config import PRESETS_DIR

        preset_file = PRESETS_DIR / f"{corpus.train['preset']}.yaml"
        if preset_file.is_file():
            preset = yaml.safe_load(preset_file.read_text(encoding="utf-8")) or {}
    except ImportError:  # omni_model not installed here: write the overlay only
        pass
    tasks = list(dict.fromkeys(t for d in corpus.datasets for t in d.tasks))
    cfg = dict(preset)
    cfg["model"] = {**preset.get("model", {}), "tasks": list(tasks)}
    cfg["data"] = {**preset.get("data", {}), "store": corpus.store_path, "tasks": list(tasks)}
    cfg["sampling"] = {**preset.get("sampling", {}), "mode": "weights", "weights": stage_configs(corpus)[-1]["weights"]}
    cfg["loss"] = {**preset.get("loss", {}), "task_l2": float(corpus.train["task_l2"])}
    cfg["run"] = {**preset.get("run", {}), "out_dir": out_dir, "resume": True}
    cfg["stages"] = stage_configs(corpus)
    try:  # validate against omni-train's own schema when it is installed
        from omni_model.config import config_from_dict
    except ImportError:
        return cfg
    config_from_dict(cfg, f"{corpus.path} (rendered omni-train config)")
    return cfg


def _get(corpus: Corpus, dotted: str) -> Any:
    head, _, rest = dotted.partition(".")
    value: Any = {
        "data_root": corpus.data_root,
        "work_dir": corpus.work_dir,
        "store": corpus.store_path,
        "ingest": corpus.ingest,
        "bridge": corpus.bridge,
        "train": corpus.train,
    }.get(head)
    for part in rest.split(".") if rest else []:
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    if value is None or isinstance(value, (dict, list)):
        raise KeyError(dotted)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=None, help="corpus YAML (default $OMNI_CORPUS or config/corpus.yaml)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("count", help="number of datasets")
    p.add_argument("--ingest", action="store_true", help="only those ingested from public files")
    p = sub.add_parser("names", help="dataset names, one a line")
    p.add_argument("--ingest", action="store_true")
    p = sub.add_parser("dataset", help="NAME<TAB>SOURCE<TAB>WEIGHT of ingest array index I")
    p.add_argument("index", type=int)
    p = sub.add_parser("get", help="one scalar setting, e.g. bridge.fraction or store")
    p.add_argument("key")
    p = sub.add_parser("train-config", help="write the omni-train YAML (curriculum included)")
    p.add_argument("--out", required=True)
    p.add_argument("--run-dir", default=None, help="omni-train run.out_dir (default WORK/train)")
    args = parser.parse_args(argv)
    try:
        corpus = load_corpus(args.corpus)
    except (ValueError, OSError) as exc:  # one line naming the file and keys, no traceback
        print(f"corpus.py: error: {exc}", file=sys.stderr)
        return 2
    if args.cmd in ("count", "names"):
        chosen = corpus.ingest_datasets() if args.ingest else corpus.datasets
        print(len(chosen) if args.cmd == "count" else "\n".join(d.name for d in chosen))
    elif args.cmd == "dataset":
        chosen = corpus.ingest_datasets()
        if not 0 <= args.index < len(chosen):
            print(f"{corpus.path}: no ingest dataset at index {args.index} (0..{len(chosen) - 1})", file=sys.stderr)
            return 2
        d = chosen[args.index]
        print(f"{d.name}\t{corpus.resolve(corpus.data_root, d.source)}\t{d.weight}")
    elif args.cmd == "get":
        try:
            print(_get(corpus, args.key))
        except KeyError:
            print(f"{corpus.path}: no scalar setting {args.key!r}", file=sys.stderr)
            return 2
    else:
        cfg = train_config(corpus, args.run_dir or os.path.join(corpus.work_dir, "train"))
        tmp = f"{args.out}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            yaml.safe_dump(cfg, fh, sort_keys=False)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
