"""Which group key a dataset is split by, and a check that it keeps neighbouring frames together.

Grouping by ``id`` (the default for a dataset without a manifest) makes every frame its own
group, so consecutive frames of one relaxation, MD run or reaction path -- nearly the same
structure -- land in train, val and test alike, and validation errors look better than they
are. :func:`plan_groups` decides each dataset's key (``--group-key``, else the manifest's
``group_key``, else a natural group the records carry in their metadata such as ``group`` or
``trajectory_id``, else ``id``) and checks it on a sample of the store: *neighbouring frames*
are consecutive records of one dataset with the same atoms (same atomic numbers in the same
order) and the same source file (or, without one, the same id prefix before a frame counter).
When the key puts most of them in different groups, the plan carries a warning that names a
better key, scored on the same sample (:func:`score_key`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omni_data.harmonize.splits import group_value
from omni_data.schema import Record

__all__ = [
    "CANDIDATE_KEYS",
    "NATURAL_KEYS",
    "DatasetGrouping",
    "GroupPlan",
    "KeyScore",
    "manifest_group_keys",
    "neighbour_pairs",
    "plan_groups",
    "sample_records",
    "score_key",
]

# metadata entries that name a natural group of frames (a trajectory, a material, a system)
NATURAL_KEYS = ("group", "group_id", "trajectory_id", "traj_id", "trajectory", "mp_id", "sid")
# derived or record keys tried when suggesting a better key than the one in use
CANDIDATE_KEYS = ("source_file", "id_prefix", "formula", "frame_block")
LEAK_WARN = 0.5  # warn when the key splits at least this share of neighbouring pairs
LEAK_OK = 0.05  # a suggested key splits at most this share of them
MIN_GROUPS = 3  # a suggested key must give at least this many groups ...
MAX_SHARE = 0.5  # ... none holding more than this share of the sample


@dataclass(frozen=True)
class KeyScore:
    """How a group key partitions a sample: groups, largest group's share, neighbours split."""

    key: str
    groups: int
    largest_share: float
    split_pairs: int  # neighbouring pairs the key puts in different groups
    pairs: int  # neighbouring pairs in the sample

    @property
    def usable(self) -> bool:
        """Keeps neighbours together and still leaves enough groups to split."""
        return (
            self.split_pairs <= LEAK_OK * self.pairs and self.groups >= MIN_GROUPS and self.largest_share <= MAX_SHARE
        )


@dataclass
class DatasetGrouping:
    """The key one dataset is split by, why, and what the sample says about it."""

    dataset: str
    key: str
    origin: str  # "--group-key", "manifest", "metadata" or "default"
    sampled: int = 0
    score: KeyScore | None = None
    suggestion: KeyScore | None = None  # a better key, when the one in use splits neighbours

    @property
    def leaks(self) -> bool:
        """True when the key splits most neighbouring frames of the sample apart."""
        s = self.score
        if s is None:
            return False
        return s.pairs >= max(3, 0.1 * self.sampled) and s.split_pairs >= LEAK_WARN * s.pairs


@dataclass
class GroupPlan:
    """Per-dataset keys for :func:`omni_data.harmonize.splits.split_store`, with what to tell the user."""

    datasets: dict[str, DatasetGrouping] = field(default_factory=dict)

    @property
    def keys(self) -> dict[str, str]:
        return {d: g.key for d, g in self.datasets.items()}

    def notes(self) -> list[str]:
        """One line per dataset whose key was not given by the user or a manifest."""
        out = []
        for d, g in sorted(self.datasets.items()):
            if g.origin == "metadata":
                out.append(
                    f"dataset {d!r} has no manifest; grouping by the {g.key!r} its records "
                    f"carry ({g.score.groups if g.score else '?'} groups in a sample of {g.sampled})"
                )
            elif g.origin == "default":
                out.append(
                    f"dataset {d!r} has no manifest and its records carry no group "
                    f"({', '.join(NATURAL_KEYS)}); grouping by 'id'"
                )
        return out

    def warnings(self) -> list[str]:
        """One line per dataset whose key puts neighbouring frames into different splits."""
        out = []
        for d, g in sorted(self.datasets.items()):
            if not g.leaks or g.score is None:
                continue
            s = g.score
            text = (
                f"dataset {d!r} is grouped by {g.key!r}, but {s.split_pairs} of {s.pairs} "
                f"neighbouring frames in a sample of {g.sampled} (same atoms, same source, one "
                "after the other: trajectory or reaction-path frames) fall in different groups, "
                "so near-identical frames can land in train and in val/test"
            )
            if g.suggestion is not None:
                b = g.suggestion
                text += (
                    f"; re-run with --group-key {b.key} ({b.groups} groups in the sample, "
                    f"{b.split_pairs} neighbouring pairs split)"
                )
            else:
                text += (
                    "; no key tried (" + ", ".join(CANDIDATE_KEYS) + ") keeps them together "
                    f"with {MIN_GROUPS}+ groups: pass --group-key with a field that names the "
                    "trajectory (metadata.NAME), or ingest with a manifest that sets group_key"
                )
            out.append(text)
        return out


def sample_records(store: Any, per_shard: int = 400, total: int = 40000) -> list[list[Record]]:
    """The first ``per_shard`` records of each shard (store order), at most ``total`` in all."""
    runs: list[list[Record]] = []
    left = total
    for name in store.shard_names:
        if left <= 0:
            break
        run = list(itertools.islice(store.iter_shard(name), min(per_shard, left)))
        left -= len(run)
        runs.append(run)
    return runs


def _same_source(a: Record, b: Record) -> bool:
    if a.source_file or b.source_file:
        return a.source_file == b.source_file
    return group_value(a, "id_prefix") == group_value(b, "id_prefix")


def neighbour_pairs(run: Sequence[Record]) -> list[tuple[Record, Record]]:
    """Consecutive records of one dataset with the same atoms and the same source."""
    return [
        (a, b)
        for a, b in zip(run, run[1:])
        if a.dataset == b.dataset and np.array_equal(a.numbers, b.numbers) and _same_source(a, b)
    ]


def _values(records: Sequence[Record], key: str) -> list[str] | None:
    """``key``'s group of every record, or None if some record lacks it."""
    try:
        return [group_value(r, key) for r in records]
    except KeyError:
        return None


def score_key(records: Sequence[Record], pairs: Sequence[tuple[Record, Record]], key: str) -> KeyScore | None:
    """How ``key`` partitions ``records`` and how many ``pairs`` it splits (None: a record lacks it)."""
    from collections import Counter

    values = _values(records, key)
    if values is None or not values:
        return None
    sizes = Counter(values)
    split = sum(group_value(a, key) != group_value(b, key) for a, b in pairs)
    return KeyScore(key, len(sizes), max(sizes.values()) / len(values), split, len(pairs))


def _natural_key(records: Sequence[Record]) -> str | None:
    """The first metadata key of :data:`NATURAL_KEYS` every record carries, with 2+ values."""
    for key in NATURAL_KEYS:
        values = _values(records, f"metadata.{key}")
        if values is not None and len(set(values)) >= 2:
            return key
    return None


def _suggest(records: Sequence[Record], pairs: Sequence[tuple[Record, Record]], used: str) -> KeyScore | None:
    """The usable key with the most groups (natural keys first on ties), or None."""
    keys = [f"metadata.{k}" for k in NATURAL_KEYS if _values(records, f"metadata.{k}") is not None]
    keys += list(CANDIDATE_KEYS)
    scores = [s for k in keys if k != used and (s := score_key(records, pairs, k)) is not None and s.usable]
    return max(scores, key=lambda s: s.groups, default=None)


def _check_key(records: Sequence[Record], key: str, dataset: str, origin: str) -> None:
    """A ValueError naming the record when ``key`` is not a group key of the dataset's records."""
    for rec in records:
        try:
            group_value(rec, key)
        except KeyError as exc:
            raise ValueError(
                f"dataset {dataset!r}: group key {key!r} ({origin}) does not apply: "
                f"{exc.args[0]}; pass --group-key with a key its records have"
            ) from None


def manifest_group_keys(datasets: Sequence[str]) -> dict[str, str]:
    """{dataset: group_key} for the datasets that have a manifest."""
    from omni_data.manifest import list_manifests, load_manifest

    known = {}
    for name in list_manifests():
        m = load_manifest(name)
        known[m.dataset] = m.group_key
    return {d: known[d] for d in datasets if d in known}


def plan_groups(
    store: Any, group_key: str | None = None, manifest_keys: Mapping[str, str] | None = None, sample: int = 400
) -> GroupPlan:
    """Each dataset's group key (``group_key`` for all, else ``manifest_keys``, else a natural
    metadata group, else ``id``), checked on a sample of up to ``sample`` records per shard."""
    datasets = sorted(store.catalog.counts.get("by_dataset", {}))
    if manifest_keys is None:
        manifest_keys = {} if group_key else manifest_group_keys(datasets)
    runs = sample_records(store, per_shard=sample)
    by_dataset: dict[str, list[Record]] = {d: [] for d in datasets}
    pairs: dict[str, list[tuple[Record, Record]]] = {d: [] for d in datasets}
    for run in runs:
        for rec in run:
            by_dataset.setdefault(rec.dataset, []).append(rec)
        for a, b in neighbour_pairs(run):
            pairs.setdefault(a.dataset, []).append((a, b))
    plan = GroupPlan()
    for d, recs in sorted(by_dataset.items()):
        if group_key:
            key, origin = group_key, "--group-key"
        elif d in manifest_keys:
            key, origin = manifest_keys[d], "manifest"
        else:
            natural = _natural_key(recs)
            key, origin = (f"metadata.{natural}", "metadata") if natural else ("id", "default")
        _check_key(recs, key, d, origin)
        g = DatasetGrouping(d, key, origin, len(recs), score_key(recs, pairs.get(d, []), key))
        if g.leaks:
            g.suggestion = _suggest(recs, pairs.get(d, []), key)
        plan.datasets[d] = g
    return plan
