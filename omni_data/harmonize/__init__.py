"""Harmonization and quality over a store's shards (see ``docs/harmonize.md``).

``references`` (elemental reference energies, streamed least squares), ``filters`` (manifest
quality filters), ``dedup`` (frame-level structure hash), ``splits`` (group-wise train/val/test),
``pairs`` (cross-task shifts on the bridge set); ``shards.map_shards`` runs any of them as Dask
work over shards. Submodules are imported on use, so this package costs nothing to import.
"""
