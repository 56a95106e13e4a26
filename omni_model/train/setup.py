"""Everything resolved from the store before the first step: tasks, elements, splits, graphs,
average neighbour count, per-task energy references and force scale, and the model.

References come, in order of preference, from the checkpoint being fine-tuned (frozen: never
refitted), from the store's ``references`` catalog section, or from a quick per-task linear
composition fit on the training records (logged as such).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ..config import Config
from ..data.dataset import (
    GraphDataset,
    avg_num_neighbors,
    fit_references,
    force_rms,
    open_store,
    split_indices,
    store_columns,
)
from ..model import OmniModel, element_numbers

__all__ = ["default_dtype", "Prepared", "model_dtype", "build_model", "prepare"]

log = logging.getLogger("omni_model.train")


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """e3nn builds its Clebsch-Gordan buffers in the default dtype: build fp64 models in fp64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@dataclass
class Prepared:
    """The resolved config plus the data and model built from it."""

    cfg: Config
    store: object
    train: GraphDataset
    valid: GraphDataset
    references: dict[str, dict[int, float]]
    references_source: str
    split_source: str
    model: OmniModel


def model_dtype(cfg: Config) -> torch.dtype:
    return torch.float64 if cfg.run.precision == "fp64" else torch.float32


def build_model(cfg: Config, references: dict[str, dict[int, float]], scale: np.ndarray) -> OmniModel:
    """OmniModel with ShiftScale set (and frozen as reference) from ``references``/``scale``."""
    with default_dtype(model_dtype(cfg)):
        model = OmniModel(cfg.model)
    shift = torch.zeros(len(model.tasks), len(model.elements), dtype=model_dtype(cfg))
    for t, task in enumerate(model.tasks):
        mu = references.get(task, {})
        for s, z in enumerate(model.elements):
            shift[t, s] = float(mu.get(z, 0.0))
    model.shift_scale.set_reference(shift, torch.as_tensor(scale, dtype=model_dtype(cfg)))
    return model


def _elements_of_store(store) -> list[str]:
    from ase.data import atomic_numbers, chemical_symbols

    by_el = store.catalog.counts.get("by_element", {}) if isinstance(store.catalog.counts, dict) else {}
    zs = sorted(int(k) if str(k).isdigit() else atomic_numbers[str(k)] for k in by_el)
    if not zs:
        raise ValueError(f"{store.path}: catalog lists no elements; set model.elements")
    return [chemical_symbols[z] for z in zs]


def prepare(cfg: Config, checkpoint: dict | None = None) -> Prepared:
    """Resolve the config against the store(s) (or the checkpoint being fine-tuned) and build.

    ``data.store`` may list several stores: they are read as one ``omni_data.store.StoreSet``.
    """
    if not cfg.data.store:
        raise ValueError("data.store is not set")
    store = open_store(cfg.data.store)
    cols = store_columns(store)
    m = cfg.model
    if checkpoint is not None:  # fine-tune / resume: architecture and references are frozen
        from ..config import config_from_dict
        from .checkpoint import references_from_json

        m = config_from_dict(checkpoint["config"]).model
        refs = references_from_json(checkpoint["references"])
        refs_source = "checkpoint (frozen)"
    tasks = list(m.tasks) or list(cfg.data.tasks) or sorted({str(t) for t in cols["task"]})
    wanted = set(cfg.data.tasks) or set(tasks)
    train_idx, valid_idx, split_source = split_indices(
        store, cfg.data.valid_fraction, cfg.run.seed, cfg.data.train_split, cfg.data.valid_split
    )
    keep = np.isin(cols["task"], list(wanted & set(tasks)))
    train_idx, valid_idx = train_idx[keep[train_idx]], valid_idx[keep[valid_idx]]
    if cfg.data.max_structures:
        train_idx = train_idx[: cfg.data.max_structures]
    if len(train_idx) == 0:
        raise ValueError(f"{cfg.data.store}: no training records for tasks {sorted(wanted)}")
    elements = list(m.elements) or _elements_of_store(store)
    zs = element_numbers(elements)
    train = GraphDataset(store, train_idx, m.cutoff, zs, tasks, cols["task"], cfg.data.graph_cache)
    valid = GraphDataset(store, valid_idx, m.cutoff, zs, tasks, cols["task"], cfg.data.graph_cache)
    avg = m.avg_num_neighbors or avg_num_neighbors(train)
    if checkpoint is None:
        if "references" in (store.catalog.sections or {}):
            from omni_data.harmonize.references import load_references

            refs = load_references(store)
            refs_source = "store catalog section 'references'"
            missing = [t for t in tasks if t not in refs]
            if missing:  # e.g. a StoreSet whose members do not all have references
                refs.update(fit_references(store, train_idx, zs, missing, cols["task"], seed=cfg.run.seed))
                refs_source += f"; fitted here for tasks {missing} (not in the section)"
        else:
            refs = fit_references(store, train_idx, zs, tasks, cols["task"], seed=cfg.run.seed)
            refs_source = "fitted here (no 'references' in the store): per-task linear composition fit"
        log.info("energy references: %s", refs_source)
    m = dataclasses.replace(m, tasks=tasks, elements=elements, avg_num_neighbors=float(avg))
    cfg = dataclasses.replace(cfg, model=m)
    scale = force_rms(train, len(tasks)) if checkpoint is None else np.ones(len(tasks))
    model = build_model(cfg, refs, scale)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    return Prepared(cfg, store, train, valid, refs, refs_source, split_source, model)
