"""Bridge selection: descriptors per structure and farthest-point sampling over stores.

``descriptors`` (vectors) -> ``sidecars`` (per-shard files) -> ``descriptor_set`` (all rows of
the chosen stores) -> ``fps`` (exact, fast) / ``distributed`` (Dask) / ``strategies`` ->
``selection`` (selection.parquet) and ``coverage`` (covering radius report). See docs/select.md.
"""
