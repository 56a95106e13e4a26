"""A small EMT-labelled store shared by the store tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from omni_data.store import write_shard
from omni_data.store.testing import bare_record, emt_records


@pytest.fixture(scope="session")
def emt_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """Three shards: two datasets/tasks, plus a shard with a bare record and a rejected input."""
    from omni_data.schema import Rejected

    root = tmp_path_factory.mktemp("store")
    a = emt_records(12, seed=1, dataset="d1", task="pbe")
    b = emt_records(9, seed=2, dataset="d2", task="r2scan")
    mixed = emt_records(3, seed=3, dataset="d1", task="r2scan") + [bare_record("d1:bare")]
    write_shard(root, "a-000", a)
    write_shard(root, "b-000", b)
    write_shard(root, "c-000", mixed, rejected=[Rejected("x.extxyz", 7, "nonfinite:forces", "d1", "x:7")])
    return root, a + b + mixed
