"""The sharded store: Arrow + LMDB shards listed in one ``catalog.json`` (see ``docs/store.md``).

Import the API from here; heavy modules (pyarrow, lmdb) load when first used.
"""

from __future__ import annotations

from omni_data.store.catalog import Catalog, read_catalog, update_catalog
from omni_data.store.idindex import build_id_index
from omni_data.store.multi import MultiCatalog, StoreSet, StoreSetView, open_stores
from omni_data.store.reader import Store
from omni_data.store.verify import VerifyReport, verify_store
from omni_data.store.view import StoreView
from omni_data.store.writer import ShardInfo, register_shard, sidecar_path, write_shard, write_shard_files

__all__ = [
    "Catalog",
    "MultiCatalog",
    "ShardInfo",
    "Store",
    "StoreSet",
    "StoreSetView",
    "StoreView",
    "VerifyReport",
    "build_id_index",
    "read_catalog",
    "register_shard",
    "sidecar_path",
    "update_catalog",
    "open_stores",
    "verify_store",
    "write_shard",
    "write_shard_files",
]
