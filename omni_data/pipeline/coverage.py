"""Label coverage: how many stored records carry energy, forces and stress, per dataset.

Why: a source whose energy hides under a key the reader does not know (``potential-energy``)
ingests every structure with ``energy=None``; without a count nobody notices. Ingest counts
per partition (``count``), keeps the counts in each shard's catalog entry (``SHARD_KEY``) so
``omni-data info`` can sum them, prints them in its summary, and, for a dataset with no energy
at all, names the source keys that look like one (``energy_candidates``) and how to map them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from omni_data.schema import LABELS, Record

__all__ = [
    "count",
    "merge",
    "line",
    "energy_candidates",
    "count_candidates",
    "missing_energy_warning",
    "store_coverage",
]

SHARD_KEY = "labels"
"""Catalog shard-entry key: ``{dataset: {"records": n, "energy": n, "forces": n, "stress": n}}``."""

Coverage = dict[str, dict[str, int]]

_HINTS = ("energ", "enthalp")
_EXACT = frozenset({"y", "e", "u0", "etot", "e_tot", "epot", "e_pot", "toten"})
MAX_CANDIDATES = 8


def count(records: Iterable[Record]) -> Coverage:
    """Per dataset: records, and how many of them have each of ``schema.LABELS``."""
    out: Coverage = {}
    for rec in records:
        c = out.setdefault(rec.dataset, {"records": 0, **{name: 0 for name in LABELS}})
        c["records"] += 1
        for name in LABELS:
            if getattr(rec, name) is not None:
                c[name] += 1
    return out


def merge(into: Coverage, other: Mapping[str, Mapping[str, int]]) -> Coverage:
    """Add ``other``'s counts to ``into`` (in place) and return it."""
    for dataset, counts in other.items():
        mine = into.setdefault(dataset, {})
        for key, n in counts.items():
            mine[key] = mine.get(key, 0) + int(n)
    return into


def line(dataset: str, counts: Mapping[str, int]) -> str:
    """``d: energy 0/262, forces 262/262, stress 262/262``."""
    n = counts.get("records", 0)
    return f"{dataset}: " + ", ".join(f"{name} {counts.get(name, 0)}/{n}" for name in LABELS)


def _looks_like_energy(key: str) -> bool:
    low = key.lower().rsplit(".", 1)[-1]
    return any(h in low for h in _HINTS) or low in _EXACT


def energy_candidates(record: Record) -> list[str]:
    """Source keys kept in ``record.metadata`` (top level, ``data.*``, ``key_value_pairs.*``)
    whose name looks like an energy and whose value is a number, as a key map would name them."""
    found: list[str] = []
    meta = record.metadata or {}
    for key, value in meta.items():
        if isinstance(value, dict) and key in ("data", "key_value_pairs", "info"):
            found += [k for k, v in value.items() if _is_number(v) and _looks_like_energy(str(k))]
        elif _is_number(value) and _looks_like_energy(str(key)) and not key.endswith("_source_key"):
            found.append(str(key))
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def count_candidates(records: Iterable[Record]) -> dict[str, int]:
    """How many records without energy hold each energy-like key (``energy_candidates``)."""
    seen: Counter[str] = Counter()
    for rec in records:
        if rec.energy is None:
            seen.update(energy_candidates(rec))
    return dict(seen)


def missing_energy_warning(
    dataset: str, counts: Mapping[str, int], candidates: Mapping[str, int], manifest: bool
) -> str | None:
    """The warning for a dataset that stored records and not one energy; None otherwise."""
    n = counts.get("records", 0)
    if n == 0 or counts.get("energy", 0) > 0:
        return None
    how = "the manifest's key_map: {energy: KEY}" if manifest else "--key-map energy=KEY"
    if not candidates:
        return (
            f"WARNING: {dataset}: none of the {n} records stored has an energy, and no source key looks "
            f"like one; if the source names it, map it with {how}"
        )
    top = sorted(candidates.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CANDIDATES]
    keys = ", ".join(f"{k} ({v})" for k, v in top)
    first = top[0][0]
    how = f"the manifest's key_map: {{energy: {first}}}" if manifest else f"--key-map energy={first}"
    return (
        f"WARNING: {dataset}: none of the {n} records stored has an energy; source keys that look like "
        f"one: {keys}; to read one as the energy, re-run into a new store with {how}"
    )


def store_coverage(shards: Iterable[Mapping[str, Any]]) -> tuple[Coverage, int]:
    """Coverage summed over catalog shard entries, and how many shards carry no counts
    (written by an older Omni or by a command that does not count labels)."""
    total: Coverage = {}
    uncounted = 0
    for shard in shards:
        labels = shard.get(SHARD_KEY)
        if labels is None:
            uncounted += 1 if shard.get("records", 0) else 0
            continue
        merge(total, labels)
    return {k: total[k] for k in sorted(total)}, uncounted
