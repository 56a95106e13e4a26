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


def test_columns_equal_pyarrow_conversion_without_importing_pandas():
    """Scalar and list columns are built from numpy buffers; they must equal pa.array's, and a
    fresh process writing a shard must not import pandas (0.2 s per Dask worker)."""
    import subprocess
    import sys

    from omni_data.store.arrow import _to_arrow

    cases = [(["a", None, "ü", ""], pa.string()), ([1.5, None, -2.0], pa.float64()), ([None, 3], pa.int64()),
             (np.array([1, 2], dtype=np.int32), pa.int32()), (np.array([True, False, True]), pa.bool_())]
    for values, typ in cases:
        assert _to_arrow(values, typ).equals(pa.array(values, type=typ))
    code = ("import sys; from omni_data.store.arrow import records_to_table; "
            "from omni_data.store.testing import emt_records; records_to_table(emt_records(3)); "
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
