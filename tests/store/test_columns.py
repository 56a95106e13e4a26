"""omni_data.store.columns: a shard's Parquet columns and decoded ones, empty tables, the quarantine."""

from __future__ import annotations

import numpy as np
import pytest

from omni_data.store import Store
from omni_data.store.columns import QUARANTINE_COLUMNS, quarantine_table, shard_table, table_schema


def test_a_shard_table_joins_parquet_and_decoded_columns_in_the_order_asked(emt_store):
    root, records = emt_store
    store = Store(root)
    entry = store.catalog.shards[1]  # b-000: records 12..20
    decoded = []
    table = shard_table(
        root, entry, ["forces", "id", "n_atoms"], lambda: decoded.append(1) or store.iter_shard("b-000")
    )
    assert table.column_names == ["forces", "id", "n_atoms"] and decoded == [1]
    assert table.column("id").to_pylist() == [r.id for r in records[12:21]]
    assert table.column("n_atoms").to_pylist() == [len(r.numbers) for r in records[12:21]]
    np.testing.assert_array_equal(np.asarray(table.column("forces")[0].as_py()).reshape(-1, 3), records[12].forces)
    # Parquet columns only: the records are never decoded
    only = shard_table(root, entry, ["id"], lambda: decoded.append(2) or [])
    assert only.num_rows == 9 and decoded == [1]


def test_an_unknown_column_names_the_columns_there_are(emt_store):
    root, _ = emt_store
    entry = Store(root).catalog.shards[0]
    with pytest.raises(KeyError, match=r"no column 'enrgy' \(columns: \[.*'energy'"):
        shard_table(root, entry, ["enrgy"], lambda: [])


def test_a_row_count_the_catalog_does_not_match_is_an_error_naming_the_file(emt_store):
    root, _ = emt_store
    entry = dict(Store(root).catalog.shards[0], records=99)
    with pytest.raises(ValueError, match=r"a-000.*holds 12 rows, the catalog says 99"):
        shard_table(root, entry, ["id"], lambda: [])


def test_empty_tables_have_the_schemas_of_full_ones(emt_store):
    root, _ = emt_store
    full = Store(root).quarantine()
    empty = quarantine_table(root, [])
    assert empty.num_rows == 0 and empty.schema == full.schema
    assert tuple(empty.column_names) == QUARANTINE_COLUMNS
    assert table_schema(["id", "forces"]) == Store(root).table(["id", "forces"]).schema
