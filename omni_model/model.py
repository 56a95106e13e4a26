"""The Omni potential: builds the network from ``ModelConfig`` and says which parameters are
task-specific (θ_T) and which are shared (θ_C).

Energy = Σ_i [scale_T · e_i + shift_T(Z_i)]; forces = -dE/dx and stress = (1/V) dE/dε by
autograd of the edge vectors (virial = Σ r ⊗ dE/dr; ASE sign convention).
"""

from __future__ import annotations

import torch
from ase.data import atomic_numbers
from e3nn import o3
from torch import nn

from .config import ModelConfig
from .data.graph import Batch
from .nn.embedding import ElementEmbedding
from .nn.interaction import Interaction
from .nn.radial import RadialEmbedding
from .nn.readout import Readout
from .nn.shift_scale import ShiftScale
from .nn.spherical import EdgeSH, hidden_irreps
from .nn.task_linear import TaskLinear

__all__ = ["element_numbers", "reachable", "layer_targets", "OmniModel"]

TASK_MODULES = (TaskLinear, ElementEmbedding, ShiftScale)
"""Module types that own θ_T (each has ``task_parameters()`` and ``regularization_terms()``)."""

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def element_numbers(elements: list[str]) -> list[int]:
    """Atomic numbers of element symbols (or numeric strings)."""
    out = []
    for e in elements:
        out.append(int(e) if str(e).isdigit() else atomic_numbers[str(e)])
    return out


def reachable(target: o3.Irreps, irreps_in: o3.Irreps, irreps_sh: o3.Irreps) -> o3.Irreps:
    """The part of ``target`` a convolution of ``irreps_in`` with ``irreps_sh`` can produce
    (e.g. no 1e after a first layer of scalars): no dead channels, as in SevenNet."""
    can = {ir for _, a in irreps_in for _, b in irreps_sh for ir in a * b}
    return o3.Irreps([(mul, ir) for mul, ir in target if ir in can])


def layer_targets(hidden: o3.Irreps, channels: int, num_layers: int, irreps_sh: o3.Irreps) -> list[o3.Irreps]:
    """Output irreps of every interaction block, keeping only channels that matter.

    Forward: a block only outputs what its convolution can produce (``reachable``). Backward:
    a block only outputs what can still reach the final scalars, through the next block's
    self-connection (same irrep) or a tensor-product path. E.g. with lmax 2 the second-to-last
    block needs no 1e/2o outputs, since the last block's paths to 0e are 0e·0e, 1o·1o and 2e·2e.
    Dropped channels could never influence the energy: the function class is unchanged.
    """
    targets, irreps = [], o3.Irreps(f"{channels}x0e")
    for k in range(num_layers):
        t = o3.Irreps(f"{channels}x0e") if k == num_layers - 1 else reachable(hidden, irreps, irreps_sh)
        targets.append(t)
        irreps = t
    needed = {o3.Irrep("0e")}
    for k in range(num_layers - 1, 0, -1):
        prev = targets[k - 1]
        keep = {ir for _, ir in prev if ir in needed or any(o in needed for _, b in irreps_sh for o in ir * b)}
        targets[k - 1] = o3.Irreps([(mul, ir) for mul, ir in prev if ir in keep])
        needed = keep
    return targets


class OmniModel(nn.Module):
    """Multi-task equivariant interatomic potential (NequIP / SevenNet architecture)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if not cfg.elements:
            raise ValueError("model.elements is empty: resolve it from the data before building")
        if cfg.avg_num_neighbors <= 0:
            raise ValueError("model.avg_num_neighbors must be resolved (> 0) before building")
        self.cfg = cfg
        self.tasks = list(cfg.tasks) or ["default"]
        self.elements = element_numbers(cfg.elements)
        n_tasks, n_species = len(self.tasks), len(self.elements)
        c = cfg.channels
        self.embedding = ElementEmbedding(n_species, c, n_tasks if cfg.task_embedding else 0)
        self.radial = RadialEmbedding(cfg.cutoff, cfg.num_basis, cfg.cutoff_p)
        self.sh = EdgeSH(cfg.lmax, cfg.parity)
        irreps = o3.Irreps(f"{c}x0e")
        hidden = hidden_irreps(c, cfg.lmax, cfg.parity, cfg.halve_channels)
        layers = []
        for target in layer_targets(hidden, c, cfg.num_layers, self.sh.irreps):
            block = Interaction(
                irreps,
                target,
                self.sh.irreps,
                cfg.num_basis,
                list(cfg.radial_hidden),
                cfg.avg_num_neighbors,
                n_tasks,
                cfg.task_intro,
                cfg.task_outro,
            )
            layers.append(block)
            irreps = block.irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout = Readout(irreps, cfg.readout_hidden or max(c // 2, 1), n_tasks, cfg.task_readout)
        self.shift_scale = ShiftScale(n_tasks, n_species, trainable=cfg.train_shift_scale)

    # ---- θ_T / θ_C -------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"task": θ_T, "shared": θ_C}: θ_T is what TASK_MODULES declare, by module type."""
        task: list[nn.Parameter] = []
        seen: set[int] = set()
        for m in self.modules():
            if isinstance(m, TASK_MODULES):
                for p in m.task_parameters():
                    if id(p) not in seen:
                        seen.add(id(p))
                        task.append(p)
        shared = [p for p in self.parameters() if id(p) not in seen]
        return {"task": task, "shared": shared}

    def regularization_terms(self) -> list[torch.Tensor]:
        """Tensors of θ_T whose squared norm the selective regulariser adds to the loss."""
        return [t for m in self.modules() if isinstance(m, TASK_MODULES) for t in m.regularization_terms()]

    def task_index(self, task: str) -> int:
        """Index of a task name; ValueError lists the known ones."""
        if task not in self.tasks:
            raise ValueError(f"unknown task {task!r}; this model knows {self.tasks}")
        return self.tasks.index(task)

    # ---- forward ---------------------------------------------------------------------------
    def edge_vectors(self, batch: Batch) -> torch.Tensor:
        """x[src] - x[dst] + shift @ cell for every edge (E, 3)."""
        vec = batch.pos[batch.src] - batch.pos[batch.dst]
        if batch.shift.shape[0]:
            vec = vec + torch.einsum("ei,eij->ej", batch.shift, batch.cell[batch.batch[batch.dst]])
        return vec

    def atomic_energies(self, batch: Batch, vec: torch.Tensor) -> torch.Tensor:
        """Per-atom energies (N,) from the edge vectors."""
        node_task = batch.task[batch.batch]
        edge_radial = self.radial(vec.norm(dim=-1))
        edge_sh = self.sh(vec)
        x = self.embedding(batch.species, node_task)
        for layer in self.layers:
            x = layer(x, edge_sh, edge_radial, batch.src, batch.dst, node_task)
        e = self.readout(x, node_task)
        return self.shift_scale(e, batch.species, node_task)

    def forward(self, batch: Batch, forces: bool = True, stress: bool = True) -> dict[str, torch.Tensor]:
        """energy (B,), and when asked forces (N, 3) and stress (B, 6; zero where not periodic).

        E depends on positions and cell only through the edge vectors r_e = x_src - x_dst + S·cell,
        so one gradient g_e = dE/dr_e gives both: F_i = Σ_{e: dst=i} g_e - Σ_{e: src=i} g_e, and
        under a strain ε (r_e -> r_e (1+ε)) dE/dε = Σ_e r_e ⊗ g_e, so σ = (1/V) Σ_e r_e ⊗ g_e.
        """
        vec = self.edge_vectors(batch).detach()
        want_grad = forces or stress
        if want_grad:
            vec.requires_grad_(True)
        e_atom = self.atomic_energies(batch, vec)
        energy = torch.zeros(batch.num_graphs, dtype=e_atom.dtype, device=e_atom.device)
        energy = energy.index_add_(0, batch.batch, e_atom)
        out = {"energy": energy, "atomic_energies": e_atom}
        if not want_grad:
            return out
        (g,) = torch.autograd.grad(energy.sum(), [vec], create_graph=self.training, allow_unused=True)
        if g is None:
            g = torch.zeros_like(vec)
        if forces:
            f = torch.zeros(batch.pos.shape, dtype=g.dtype, device=g.device).index_add_(0, batch.dst, g)
            out["forces"] = f.index_add_(0, batch.src, -g)
        if stress:
            virial = torch.zeros(batch.num_graphs, 3, 3, dtype=g.dtype, device=g.device)
            virial = virial.index_add_(0, batch.batch[batch.dst], vec.unsqueeze(2) * g.unsqueeze(1))
            volume = torch.linalg.det(batch.cell).abs()
            volume = torch.where(batch.periodic, volume, torch.ones_like(volume))
            sigma = virial / volume[:, None, None]
            sigma = 0.5 * (sigma + sigma.transpose(1, 2))
            voigt = torch.stack([sigma[:, a, b] for a, b in VOIGT], dim=1)
            out["stress"] = torch.where(batch.periodic[:, None], voigt, torch.zeros_like(voigt))
        return out
