"""Arrow shards: the columns other tools read directly, nulls for missing labels."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from omni_data.store.arrow import ArrowShard, records_to_table, write_table
from omni_data.store.testing import assert_same_records, bare_record, emt_records


def test_columns_read_with_plain_pyarrow(tmp_path):
    records = emt_records(6, seed=2) + [bare_record()]
    path = tmp_path / "s.arrow"
    write_table(records_to_table(records), path)
    with pa.memory_map(str(path)) as src:
        table = pa.ipc.open_file(src).read_all()
    assert table.num_rows == 7
    assert table.column("id").to_pylist() == [r.id for r in records]
    assert table.column("n_atoms").to_pylist() == [r.n_atoms for r in records]
    # a missing energy is a null, never 0
    assert table.column("energy").to_pylist()[-1] is None
    assert table.column("forces").to_pylist()[-1] is None
    assert table.column("stress").null_count == sum(r.stress is None for r in records)
    first = records[0]
    assert np.allclose(table.column("positions")[0].as_py(), first.positions.reshape(-1))
    assert np.allclose(table.column("forces")[0].as_py(), first.forces.reshape(-1))
    assert table.column("stress")[0].as_py() == first.stress.tolist()


def test_shard_rows_round_trip(tmp_path):
    records = emt_records(10, seed=4) + [bare_record()]
    path = tmp_path / "s.arrow"
    write_table(records_to_table(records), path)
    shard = ArrowShard(path)
    assert_same_records(records, [shard.record(i) for i in range(len(shard))])
    assert shard.find(records[3].id) == 3 and shard.find("nope") is None
