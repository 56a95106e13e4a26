"""The numbers behind the report, gathered shard by shard (memory bounded by a shard).

Per task: frames containing each element, atoms per frame, energy per atom (raw, and after the
catalog's reference energies when ``omni-data references`` has run) and a capped random sample
of per-atom force magnitudes (the count is exact; only the histogram is sampled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from omni_data.harmonize.references import N_Z, element_counts, reference_energy

__all__ = ["TaskStats", "stats_of", "reason_group", "StoreSummary", "check_distinct", "summarize_stores"]

FORCE_SAMPLE = 20000  # force magnitudes kept per task per shard


@dataclass
class TaskStats:
    """Everything the report draws for one task."""

    frames: int = 0
    atoms: int = 0
    element_frames: np.ndarray = field(default_factory=lambda: np.zeros(N_Z, dtype=np.int64))
    n_atoms: list[np.ndarray] = field(default_factory=list)
    epa: list[np.ndarray] = field(default_factory=list)
    epa_ref: list[np.ndarray] = field(default_factory=list)
    fmag: list[np.ndarray] = field(default_factory=list)
    force_atoms: int = 0
    datasets: dict[str, int] = field(default_factory=dict)

    def merge(self, other: TaskStats) -> TaskStats:
        self.frames += other.frames
        self.atoms += other.atoms
        self.element_frames = self.element_frames + other.element_frames
        for name in ("n_atoms", "epa", "epa_ref", "fmag"):
            getattr(self, name).extend(getattr(other, name))
        self.force_atoms += other.force_atoms
        for d, n in other.datasets.items():
            self.datasets[d] = self.datasets.get(d, 0) + n
        return self

    def array(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)


def stats_of(
    records: Any, refs: Mapping[str, Mapping[int, float]] | None = None, seed: int = 0
) -> dict[str, TaskStats]:
    """Per-task statistics of an iterable of records."""
    rng = np.random.default_rng(seed)
    cols: dict[str, dict[str, list]] = {}
    out: dict[str, TaskStats] = {}
    for rec in records:
        st = out.setdefault(rec.task, TaskStats())
        c = cols.setdefault(rec.task, {"n": [], "epa": [], "ref": [], "f": []})
        n = rec.n_atoms
        st.frames += 1
        st.atoms += n
        st.element_frames += element_counts(rec.numbers) > 0
        st.datasets[rec.dataset] = st.datasets.get(rec.dataset, 0) + 1
        c["n"].append(n)
        if rec.energy is not None:
            c["epa"].append(rec.energy / n)
            if refs and rec.task in refs:
                c["ref"].append((rec.energy - reference_energy(refs[rec.task], rec.numbers)) / n)
        if rec.forces is not None:
            c["f"].append(np.linalg.norm(np.asarray(rec.forces).reshape(-1, 3), axis=1))
            st.force_atoms += n
    for task, c in cols.items():
        st = out[task]
        st.n_atoms = [np.asarray(c["n"], dtype=np.int32)]
        st.epa = [np.asarray(c["epa"])]
        st.epa_ref = [np.asarray(c["ref"])] if c["ref"] else []
        f = np.concatenate(c["f"]) if c["f"] else np.zeros(0)
        if len(f) > FORCE_SAMPLE:
            f = rng.choice(f, FORCE_SAMPLE, replace=False)
        st.fmag = [f]
    return out


def _shard_stats(store_path: str, shard: str, refs: Mapping[str, Mapping[int, float]] | None) -> dict:
    import zlib

    from omni_data.store import Store

    return stats_of(Store(store_path).iter_shard(shard), refs, seed=zlib.crc32(shard.encode()))


def reason_group(reason: str) -> str:
    """A quarantine reason without its record-specific numbers, so like reasons count together:
    ``filter:max_force |F|=12 ...`` -> ``filter:max_force``, ``parse:bad line 7`` -> ``parse:bad line #``."""
    import re

    if reason.startswith(("filter:", "duplicate:")):
        return reason.split(" ", 1)[0]
    return re.sub(r"\d+(\.\d+)?", "#", reason)[:48]


@dataclass
class StoreSummary:
    """What the report shows for a set of stores."""

    tasks: dict[str, TaskStats]
    quarantine: dict[str, int]  # reason_group(reason) -> count
    references: dict[str, Any]
    dedup: list[dict[str, Any]]
    stores: list[str]
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # store -> catalog section
    pairs: list[dict[str, Any]] = field(default_factory=list)


def check_distinct(paths: Sequence[str]) -> None:
    """ValueError when two of ``paths`` are the same store (same folder, however spelled): its
    records would be counted twice."""
    import os

    seen: dict[str, str] = {}
    for path in paths:
        key = os.path.realpath(path)
        if key in seen:
            raise ValueError(
                f"store {key} given twice (as {seen[key]} and {path}); "
                f"its records would be counted twice: pass each store once"
            )
        seen[key] = str(path)


def summarize_stores(paths: Sequence[str], workers: int = 1, client: Any = None) -> StoreSummary:
    """Collect the report's statistics from every shard of every store (each store once)."""
    from collections import Counter

    check_distinct(paths)

    from omni_data.harmonize.shards import map_shards
    from omni_data.store import Store

    tasks: dict[str, TaskStats] = {}
    reasons: Counter[str] = Counter()
    references: dict[str, Any] = {}
    dedup: list[dict[str, Any]] = []
    splits: dict[str, dict[str, Any]] = {}
    pairs: list[dict[str, Any]] = []
    for path in paths:
        store = Store(path)
        sections = store.catalog.sections or {}
        ref_section = sections.get("references") or {}
        refs = {t: {int(z): float(v) for z, v in d["mu"].items()} for t, d in ref_section.items()}
        references.update(ref_section)
        if "dedup" in sections:
            dedup.append({"store": str(path), **sections["dedup"]})
        if "splits" in sections:
            splits[str(path)] = sections["splits"]
        pairs.extend(sections.get("pairs") or [])
        for part in map_shards(
            path, partial(_shard_stats, refs=refs or None), store.shard_names, workers=workers, client=client
        ):
            for task, st in part.items():
                tasks[task] = tasks[task].merge(st) if task in tasks else st
        q = store.quarantine()
        if len(q):
            reasons.update(reason_group(r) for r in q.column("reason").to_pylist())
    return StoreSummary(
        dict(sorted(tasks.items())),
        dict(reasons.most_common()),
        references,
        dedup,
        [str(p) for p in paths],
        splits,
        pairs,
    )
