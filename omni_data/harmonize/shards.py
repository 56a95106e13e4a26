"""Run one function per shard of a store, in parallel with Dask, memory bounded by a shard.

Every harmonize step (references, dedup hashes, split labels, filter masks) is a map over
shards followed by a small reduction. Tasks receive only ``(store_path, shard_name)`` -- never a
store handle -- so each worker process opens its own read-only store (handles are never pickled).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["map_shards", "carried_rejections"]


def map_shards(
    store_path: str | Path,
    func: Callable[[str, str], Any],
    shards: Sequence[str] | None = None,
    workers: int = 1,
    client: Any = None,
) -> list[Any]:
    """``[func(store_path, shard) for shard in shards]``, in shard order.

    ``workers == 1`` runs in this process (no Dask overhead, easiest to debug); ``workers > 1``
    uses Dask's multiprocessing scheduler with that many processes; a ``dask.distributed``
    ``client`` (LocalCluster, SLURMCluster, a scheduler address) takes precedence when given.
    ``func`` must be a module-level function so it pickles.
    """
    path = str(Path(store_path))
    if shards is None:
        from omni_data.store import Store

        shards = list(Store(path).shard_names)
    shards = list(shards)
    if client is not None:
        futures = client.map(func, [path] * len(shards), shards, pure=False)
        return list(client.gather(futures))
    if workers <= 1 or len(shards) <= 1:
        return [func(path, s) for s in shards]
    import dask

    tasks = [dask.delayed(func)(path, s) for s in shards]
    return list(dask.compute(*tasks, scheduler="processes", num_workers=int(workers)))


def carried_rejections(store: Any, shard: str) -> list:
    """The quarantine entries of ``shard`` as ``Rejected``, so a derived store keeps them."""
    import json

    from omni_data.schema import Rejected

    entry = store.catalog.shard(shard)
    if not entry or not entry.get("quarantine"):
        return []
    import pyarrow.parquet as pq

    rows = pq.read_table(str(Path(store.path) / entry["quarantine"]["file"])).to_pylist()
    return [
        Rejected(
            r["source_file"],
            int(r["source_index"]),
            r["reason"],
            r.get("dataset", ""),
            r.get("source_id", ""),
            json.loads(r["detail"]) if r.get("detail") else {},
        )
        for r in rows
    ]
