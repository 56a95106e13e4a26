"""Omni model: the multi-task equivariant potential (torch + e3nn)."""
