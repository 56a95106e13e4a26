"""ASE calculator for an Omni checkpoint: ``OmniCalculator("final.pt", task="mpa")``."""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class OmniCalculator(Calculator):
    """Energy, forces and (for fully periodic cells) stress of one task head of an Omni model.

    The model is loaded with ``torch.load(weights_only=True)``; EMA weights are used when the
    checkpoint has them. Stress is in eV/Å³ with ASE's sign convention. Structures with an element
    that has no reference energy in ``task`` raise one ``MissingReferenceWarning`` per element.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, checkpoint: str, task: str | None = None, device: str = "cpu", **kwargs) -> None:
        super().__init__(**kwargs)
        from .data.graph import species_table
        from .train.checkpoint import load_model

        self.model, self.config, ckpt = load_model(checkpoint, map_location=device)
        self.checkpoint = str(checkpoint)
        self.references = dict(ckpt.get("references") or {})
        self._warned: set[tuple[str, int]] = set()
        self.model.to(device)
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
