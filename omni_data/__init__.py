"""Omni data: read many quantum-chemistry databases into one harmonized, sharded store.

Importing this package is cheap: no torch, e3nn or dask.distributed is imported here.
"""

from omni_data.schema import SCHEMA_VERSION, Record, Rejected

__all__ = ["SCHEMA_VERSION", "Record", "Rejected"]
__version__ = "0.1.0"
