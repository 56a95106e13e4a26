"""ASE calculator for an Omni checkpoint: ``OmniCalculator("final.pt", task="mpa", dtype="float64")``."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

__all__ = ["torch_dtype", "check_keywords", "OmniCalculator"]

DTYPES = ("float32", "float64")
# Calculator.__init__ keywords of ASE's own that OmniCalculator passes on; anything else is a typo
ASE_KEYWORDS = ("label", "atoms", "directory", "restart", "ignore_bad_restart_file")


def torch_dtype(dtype: Any) -> Any:
    """``"float32"``/``"float64"`` (or the torch dtype) as a torch dtype; ValueError otherwise."""
    import torch

    table = {"float32": torch.float32, "float64": torch.float64}
    if isinstance(dtype, torch.dtype) and dtype in table.values():
        return dtype
    if isinstance(dtype, str) and dtype in table:
        return table[dtype]
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def check_keywords(kwargs: dict[str, Any]) -> None:
    """TypeError naming every keyword argument that is neither Omni's nor ASE's own."""
    unknown = sorted(set(kwargs) - set(ASE_KEYWORDS))
    if unknown:
        raise TypeError(
            f"OmniCalculator got unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes checkpoint, task, device, dtype and ASE's {', '.join(ASE_KEYWORDS)}"
        )


class OmniCalculator(Calculator):
    """Energy, forces and (for fully periodic cells) stress of one task head of an Omni model.

    The model is loaded with ``torch.load(weights_only=True)``; EMA weights are used when the
    checkpoint has them. ``dtype`` ("float32" or "float64") is the precision the model is built
    in and evaluated in (default: the checkpoint's own ``run.precision``): float64 for phonons and
    finite differences, where float32 rounding alone moves a force by ~1e-2 eV/Å. Stress is in
    eV/Å³ with ASE's sign convention. Structures with an element that has no reference energy in
    ``task`` raise one ``MissingReferenceWarning`` per element. A keyword argument that is not
    one of these or of ASE's ``Calculator`` raises TypeError (it is not kept as a parameter).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(
        self, checkpoint: str, task: str | None = None, device: str = "cpu", dtype: Any = None, **kwargs: Any
    ) -> None:
        check_keywords(kwargs)
        want = None if dtype is None else torch_dtype(dtype)
        super().__init__(**kwargs)
        from .data.graph import species_table

        self.model, self.config, ckpt = _load(checkpoint, device, want)
        self.checkpoint = str(checkpoint)
        self.references = dict(ckpt.get("references") or {})
        self._warned: set[tuple[str, int]] = set()
        self.device = device
        if task is None:
            if len(self.model.tasks) != 1:
                raise ValueError(f"{checkpoint}: model has tasks {self.model.tasks}; pass task=...")
            task = self.model.tasks[0]
        self.task = task
        self.task_id = self.model.task_index(task)
        self.table = species_table(self.model.elements)
        self.dtype = next(self.model.parameters()).dtype

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        from .data.graph import collate, graph_from_atoms
        from .evaluation.references import warn_unreferenced

        warn_unreferenced(self.references, self.task, self.atoms.numbers, self._warned, self.checkpoint)
        g = graph_from_atoms(self.atoms, self.model.cfg.cutoff, self.table, task=self.task_id, labels=False)
        batch = collate([g], dtype=self.dtype).to(self.device)
        want_stress = bool(self.atoms.pbc.all())
        out = self.model(batch, forces=True, stress=want_stress)
        energy = float(out["energy"].detach().cpu()[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["atomic_energies"].detach().cpu().numpy().astype(np.float64),
            "forces": out["forces"].detach().cpu().numpy().astype(np.float64),
        }
        if want_stress:
            self.results["stress"] = out["stress"].detach().cpu().numpy()[0].astype(np.float64)


def _load(checkpoint: str, device: str, dtype: Any) -> tuple[Any, Any, dict]:
    """(model, config, checkpoint) with the model built in ``dtype`` (None: the checkpoint's
    precision). e3nn makes its constant buffers in the default dtype, so a model for another
    precision is built again under it rather than cast."""
    from .train.checkpoint import load_model
    from .train.setup import default_dtype, model_dtype

    model, config, ckpt = load_model(checkpoint, map_location=device)
    want = dtype or model_dtype(config)
    if next(model.parameters()).dtype != want:
        with default_dtype(want):
            model, config, ckpt = load_model(checkpoint, map_location=device)
    return model.to(device), config, ckpt
