"""Store -> graphs (dataset.py, graph.py) and per-task sampling (sampler.py)."""
