"""A shard's Parquet columns: scalars only, read by plain pyarrow, checked before use."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from omni_data.store.arrow import COLUMNS, columns_table, formula, read_columns, records_to_table, write_columns
from omni_data.store.testing import bare_record, emt_records


def test_columns_read_with_plain_pyarrow(tmp_path):
    records = emt_records(6, seed=2) + [bare_record()]
    path = tmp_path / "s.parquet"
    write_columns(columns_table(records), path)
    table = pq.read_table(str(path))
    assert table.column_names == list(COLUMNS)
    assert table.num_rows == 7
    assert table.column("id").to_pylist() == [r.id for r in records]
    assert table.column("n_atoms").to_pylist() == [r.n_atoms for r in records]
    # a missing energy is a null, never 0
    assert table.column("energy").to_pylist()[-1] is None
    assert table.column("energy").to_pylist()[:-1] == [r.energy for r in records[:-1]]
    assert table.column("has_forces").to_pylist() == [r.forces is not None for r in records]
    # no per-atom array is stored in the columns: each structure is stored once (LMDB)
    assert not any(pa.types.is_list(f.type) for f in table.schema)


def test_formula_is_hill_order():
    assert formula(np.array([8, 22, 8])) == "O2Ti"
    assert formula(np.array([1, 6, 1, 8, 1, 1])) == "CH4O"
    assert formula(np.array([1, 1, 8])) == "H2O"


def test_read_columns_checks_size_crc_and_structure(tmp_path):
    import zlib

    records = emt_records(5, seed=3)
    path = tmp_path / "s.parquet"
    write_columns(columns_table(records), path)
    data = path.read_bytes()
    meta = {"bytes": len(data), "crc32": zlib.crc32(data)}
    assert read_columns(path, meta, ["id"]).column("id").to_pylist() == [r.id for r in records]
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"s\.parquet: checksum mismatch"):
        read_columns(path, meta)
    path.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"s\.parquet: \d+ bytes on disk, the catalog says"):
        read_columns(path, meta)
    path.write_bytes(b"PAR1" + bytes(50))
    with pytest.raises(ValueError, match=r"s\.parquet: unreadable Parquet columns"):
        read_columns(path, None)


def test_record_table_columns_equal_pyarrow_conversion_without_importing_pandas():
    """Columns are built from numpy buffers; they must equal pa.array's, and a fresh process
    writing a shard must not import pandas (0.2 s per Dask worker)."""
    import subprocess
    import sys

    from omni_data.store.arrow import _to_arrow

    cases = [
        (["a", None, "ü", ""], pa.string()),
        ([1.5, None, -2.0], pa.float64()),
        ([None, 3], pa.int64()),
        (np.array([1, 2], dtype=np.int32), pa.int32()),
        (np.array([True, False, True]), pa.bool_()),
    ]
    for values, typ in cases:
        assert _to_arrow(values, typ).equals(pa.array(values, type=typ))
    records = emt_records(3)
    table = records_to_table(records)
    assert np.allclose(table.column("forces")[0].as_py(), records[0].forces.reshape(-1))
    code = (
        "import sys; from omni_data.store.arrow import columns_table; "
        "from omni_data.store.testing import emt_records; columns_table(emt_records(3)); "
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
