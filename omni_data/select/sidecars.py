"""Descriptor sidecars: one ``.npz`` per shard (float32 ``x`` aligned with the shard's rows, ``ids``).

Layout: ``STORE/sidecars/descriptors-<kind>/<shard>.npz`` (``store.sidecar_path``). Written
atomically (temp file, then ``os.replace``); an existing sidecar whose ids match the shard is
kept, so ``omni-data describe`` resumes. The settings used go to the catalog section
``descriptors`` so that a later run with other settings is refused instead of mixed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.select.descriptors import DESCRIPTORS, RDFSpec, describe_records

__all__ = [
    "sidecar_kind",
    "shard_sidecar",
    "write_npz_atomic",
    "load_shard",
    "load_shard_ids",
    "load_shard_x",
    "load_shard_rows",
    "describe_shard",
    "describe_store",
]


def sidecar_kind(kind: str) -> str:
    if kind not in DESCRIPTORS:
        raise ValueError(f"unknown descriptor kind {kind!r}; choose one of {tuple(DESCRIPTORS)}")
    return f"descriptors-{kind}"


def shard_sidecar(store_dir: Path, kind: str, shard: str) -> Path:
    from omni_data.store import sidecar_path

    return sidecar_path(Path(store_dir), sidecar_kind(kind), shard, ".npz")


def write_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to a temporary name in the same folder, then rename over ``path``."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **arrays as its allow_pickle
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_shard(store_dir: Path, kind: str, shard: str) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 (n, d), ids (n,) str) of one shard; a clear error when not described yet."""
    path = shard_sidecar(store_dir, kind, shard)
    if not path.exists():
        raise FileNotFoundError(
            f"{store_dir}: shard {shard!r} has no {kind} descriptors "
            f"({path}); run `omni-data describe {store_dir} --kind {kind}`"
        )
    with np.load(path, allow_pickle=False) as z:
        return z["x"], z["ids"]


def load_shard_ids(store_dir: Path, kind: str, shard: str) -> np.ndarray:
    """Only the ids of one shard's sidecar (npz members load lazily)."""
    path = shard_sidecar(store_dir, kind, shard)
    if not path.exists():
        load_shard(store_dir, kind, shard)  # raises the explanatory error
    with np.load(path, allow_pickle=False) as z:
        return z["ids"]


def load_shard_x(store_dir: str, kind: str, shard: str) -> np.ndarray:
    """Just the vectors (what a Dask task of distributed FPS loads)."""
    return load_shard(Path(store_dir), kind, shard)[0]


def load_shard_rows(store_dir: str, kind: str, shard: str, rows: np.ndarray) -> np.ndarray:
    """Some rows of one shard's vectors (a Dask task of distributed FPS over a subset)."""
    return load_shard_x(store_dir, kind, shard)[rows]


def describe_shard(
    store_dir: str,
    shard: str,
    kind: str = "rdf",
    spec: RDFSpec = RDFSpec(),  # noqa: B008  (a frozen dataclass: one shared default is safe)
    species: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Describe one shard (opens its own Store: safe in a Dask worker); skip if already done."""
    from omni_data.store import Store

    store = Store(store_dir)
    ids = np.asarray(store.table(["id"], shard=shard).column("id").to_pylist(), dtype=str)
    path = shard_sidecar(Path(store_dir), kind, shard)
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            if np.array_equal(z["ids"], ids):
                return {"shard": shard, "rows": len(ids), "skipped": True}
    start = time.perf_counter()
    records = list(store.iter_shard(shard))
    got = np.asarray([r.id for r in records], dtype=str)
    if not np.array_equal(got, ids):
        raise ValueError(f"{store_dir}: shard {shard!r} records do not match its id column")
    try:
        x = describe_records(records, kind, spec, species)
    except ValueError as exc:
        raise ValueError(f"{store_dir}: shard {shard!r}: {exc}") from exc
    write_npz_atomic(path, x=x.astype(np.float32), ids=ids)
    return {"shard": shard, "rows": len(ids), "skipped": False, "seconds": round(time.perf_counter() - start, 3)}


def describe_store(
    store_dir: str | Path,
    kind: str = "rdf",
    spec: RDFSpec = RDFSpec(),  # noqa: B008  (a frozen dataclass: one shared default is safe)
    client: Any = None,
) -> list[dict[str, Any]]:
    """Describe every shard (Dask tasks on ``client``, or in this process when None)."""
    from omni_data.store import Store

    store_dir = str(store_dir)
    store = Store(store_dir)
    species = None
    if kind in DESCRIPTORS and DESCRIPTORS[kind].needs_species:
        from ase.data import atomic_numbers

        species = sorted(atomic_numbers[e] for e in store.catalog.counts.get("by_element", {}))
    _check_settings(store, kind, spec)
    shards = list(store.shard_names)
    if client is None:
        done = [describe_shard(store_dir, s, kind, spec, species) for s in shards]
    else:
        futures = [client.submit(describe_shard, store_dir, s, kind, spec, species, pure=False) for s in shards]
        done = client.gather(futures)
    return done


def _check_settings(store: Any, kind: str, spec: RDFSpec) -> None:
    """Record the descriptor settings in the catalog; refuse to mix two settings in one store."""
    settings = {"kind": kind, "dim": spec.dim if kind == "rdf" else None, "spec": asdict(spec)}
    sections = store.catalog.sections.get("descriptors", {})
    old = sections.get(kind)
    folder = Path(store.path) / "sidecars" / sidecar_kind(kind)
    if old is not None and old != settings and any(folder.glob("*.npz")):
        raise ValueError(
            f"{store.path}: {kind} descriptors were made with {old}, not {settings}; delete {folder} to redo them"
        )
    if old != settings:
        store.catalog.update_section("descriptors", {**sections, kind: settings})
