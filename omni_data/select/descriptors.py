"""One fixed-length, model-free descriptor vector per structure, for farthest-point sampling.

Default ``rdf`` (64 numbers, float32), invariant to rotation, translation, atom order and
supercell choice, and cheap enough for hundreds of millions of structures:

* composition (16): fraction-weighted mean and standard deviation of five element properties
  (group, period, Pauling electronegativity, covalent radius, log mass; pymatgen / ase.data,
  each scaled to about [0, 1]), the s/p/d/f block fractions, the periodic fraction
  (``sum(pbc) / 3``: molecule 0, slab/wire, bulk 1) and the number density (atoms/Å³ x 10, 0
  without a cell): chemistry and "kind of system" (molecule, crystal, surface, porous MOF).
* element-class-resolved radial distribution (6 pair types x 8 Gaussians = 48): atoms are put
  in three classes (H, non-metal/metalloid, metal); for each class pair, Gaussian-smeared pair
  distances up to ``cutoff`` (vesin neighbour lists, periodic or not, smooth cosine cutoff) are
  summed, divided by the number of atoms and compressed with ``log1p``: local geometry.

``soap`` (optional extra ``dscribe``): structure-averaged SOAP; errors clearly if missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from omni_data.schema import Record

__all__ = [
    "RDFSpec",
    "element_table",
    "describe_record",
    "rdf_descriptors",
    "DescriptorKind",
    "describe_records",
    "soap_descriptors",
]

N_COMPOSITION = 16
N_PAIRS = 6  # (H,H) (H,X) (H,M) (X,X) (X,M) (M,M)
_NONMETALS = {2, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 32, 33, 34, 35, 36, 51, 52, 53, 54, 85, 86}
_PAIR = np.array([[0, 1, 2], [1, 3, 4], [2, 4, 5]], dtype=np.int64)


@dataclass(frozen=True)
class RDFSpec:
    """Radial part settings; the vector length is ``16 + 6 * n_gaussians`` (64 by default)."""

    cutoff: float = 5.0
    n_gaussians: int = 8
    r_min: float = 0.75

    @property
    def dim(self) -> int:
        return N_COMPOSITION + N_PAIRS * self.n_gaussians

    @property
    def centers(self) -> np.ndarray:
        return np.linspace(self.r_min, self.cutoff, self.n_gaussians)

    @property
    def sigma(self) -> float:
        return (self.cutoff - self.r_min) / max(self.n_gaussians - 1, 1)


@lru_cache(maxsize=1)
def element_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per Z (index 0..118): scaled properties (119, 5), block one-hot (119, 4), class (119,).

    Missing electronegativity (noble gases) is 0, on purpose: they are not bonding partners.
    """
    import warnings

    from ase.data import atomic_masses, covalent_radii
    from pymatgen.core.periodic_table import Element

    props = np.zeros((119, 5))
    blocks = np.zeros((119, 4))
    classes = np.full(119, 2, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, 119):
            el = Element.from_Z(z)
            x = el.X
            props[z] = (
                el.group / 18.0,
                el.row / 7.0,
                0.0 if x is None or math.isnan(x) else x / 4.0,
                covalent_radii[z] / 2.5,
                math.log(max(atomic_masses[z], 1.0)) / math.log(300.0),
            )
            blocks[z, "spdf".index(el.block)] = 1.0
    classes[1] = 0
    classes[sorted(_NONMETALS)] = 1
    return props, blocks, classes


def _composition(numbers: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray) -> np.ndarray:
    props, blocks, _ = element_table()
    p = props[numbers]
    out = np.empty(N_COMPOSITION)
    out[0:5] = p.mean(axis=0)
    out[5:10] = p.std(axis=0)
    out[10:14] = blocks[numbers].mean(axis=0)
    out[14] = float(np.sum(pbc)) / 3.0
    volume = abs(float(np.linalg.det(cell))) if cell is not None and np.any(pbc) else 0.0
    out[15] = 10.0 * len(numbers) / volume if volume > 1e-6 else 0.0
    return out


def _pairs(
    positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half neighbour list (i, j, distance) within ``cutoff`` (vesin)."""
    from vesin import NeighborList

    periodic = np.asarray(pbc, dtype=bool)
    box = np.zeros((3, 3)) if cell is None or not periodic.any() else np.asarray(cell, float)
    nl = NeighborList(cutoff=cutoff, full_list=False)
    i, j, d = nl.compute(
        points=np.asarray(positions, float),
        box=box,
        periodic=[bool(p) for p in periodic] if box.any() else False,
        quantities="ijd",
    )
    return i, j, d


def _radial(
    numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray, spec: RDFSpec
) -> np.ndarray:
    _, _, classes = element_table()
    i, j, d = _pairs(positions, cell, pbc, spec.cutoff)
    hist = np.zeros((N_PAIRS, spec.n_gaussians))
    if len(d):
        cls = classes[numbers]
        pair = _PAIR[cls[i], cls[j]]
        fc = 0.5 * (np.cos(np.pi * np.clip(d / spec.cutoff, 0.0, 1.0)) + 1.0)
        g = np.exp(-0.5 * ((d[:, None] - spec.centers[None, :]) / spec.sigma) ** 2) * fc[:, None]
        np.add.at(hist, pair, g)
    # each half-list pair is a neighbour of both atoms: per-atom average counts it twice
    return np.log1p(2.0 * hist.ravel() / len(numbers))


def describe_record(record: Record, spec: RDFSpec = RDFSpec()) -> np.ndarray:
    """The ``rdf`` descriptor of one record (float32, ``spec.dim``)."""
    numbers = np.asarray(record.numbers, dtype=np.int64)
    if len(numbers) == 0:
        raise ValueError(f"record {record.id!r}: no atoms, cannot describe")
    if numbers.min() < 1 or numbers.max() > 118:
        raise ValueError(f"record {record.id!r}: atomic numbers outside 1..118")
    pbc = np.asarray(record.pbc, dtype=bool)
    comp = _composition(numbers, record.cell, pbc)
    rad = _radial(numbers, np.asarray(record.positions, float), record.cell, pbc, spec)
    return np.concatenate([comp, rad]).astype(np.float32)


def rdf_descriptors(
    records: Sequence[Record], spec: RDFSpec = RDFSpec(), species: Sequence[int] | None = None
) -> np.ndarray:
    """(n, spec.dim) float32 ``rdf`` descriptors (``species`` unused: the classes are fixed)."""
    if not records:
        return np.zeros((0, spec.dim), dtype=np.float32)
    return np.stack([describe_record(r, spec) for r in records])


def _soap(records: Sequence[Record], spec: RDFSpec = RDFSpec(), species: Sequence[int] | None = None) -> np.ndarray:
    return soap_descriptors(records, species=species, cutoff=spec.cutoff)


@dataclass(frozen=True)
class DescriptorKind:
    """One registered descriptor: ``compute(records, spec, species)`` -> (n, dim) float32."""

    compute: Callable[..., np.ndarray]
    help: str
    needs_species: bool = False  # True: the store's element list must be passed (fixed width)


DESCRIPTORS: dict[str, DescriptorKind] = {
    "rdf": DescriptorKind(rdf_descriptors, "composition + element-class radial features (default, 64 numbers)"),
    "soap": DescriptorKind(
        _soap, "structure-averaged SOAP (needs dscribe: pip install 'omni[soap]')", needs_species=True
    ),
}
"""The one table of descriptor kinds: name -> DescriptorKind (CLI choices come from it)."""


def describe_records(
    records: Iterable[Record], kind: str = "rdf", spec: RDFSpec = RDFSpec(), species: Sequence[int] | None = None
) -> np.ndarray:
    """(n, dim) float32 descriptors of ``records`` with the registered ``kind``."""
    if kind not in DESCRIPTORS:
        raise ValueError(f"unknown descriptor kind {kind!r}; choose one of {tuple(DESCRIPTORS)}")
    return DESCRIPTORS[kind].compute(list(records), spec, species)


def soap_descriptors(
    records: Sequence[Record], species: Sequence[int] | None = None, cutoff: float = 5.0, n_max: int = 4, l_max: int = 3
) -> np.ndarray:
    """Structure-averaged SOAP (dscribe), float32. ``species`` must cover the whole store."""
    try:
        from dscribe.descriptors import SOAP
    except ImportError as exc:  # an optional extra, never a silent fallback
        raise ImportError(
            "descriptor kind 'soap' needs dscribe: pip install 'omni[soap]' (or pip install dscribe)"
        ) from exc
    from ase import Atoms

    if species is None:
        species = sorted({int(z) for r in records for z in r.numbers})
    soaps = {
        p: SOAP(species=list(species), r_cut=cutoff, n_max=n_max, l_max=l_max, periodic=p, average="inner")
        for p in (False, True)
    }
    out = []
    for r in records:
        periodic = bool(np.any(r.pbc)) and r.cell is not None
        atoms = Atoms(
            numbers=r.numbers,
            positions=r.positions,
            cell=r.cell if periodic else None,
            pbc=r.pbc if periodic else False,
        )
        out.append(np.asarray(soaps[periodic].create(atoms), dtype=np.float32).ravel())
    width = soaps[False].get_number_of_features()
    return np.stack(out) if out else np.zeros((0, width), np.float32)
