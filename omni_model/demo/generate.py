"""Build the demo corpus: three small "databases", each computed for real with its own cheap method
and written in its own native format, plus one manifest YAML per database.

===========  ======================  ==================================  =====================
database     method                  native format                        energy convention
===========  ======================  ==================================  =====================
metals       ASE EMT                 ASE sqlite db (``.db``)              EMT's own zero (about
                                                                          cohesive, eV)
crystals     tblite GFN1-xTB (Γ)     extended XYZ with stress             GFN1 total energy, eV
molecules    tblite GFN2-xTB         SPICE HDF5 (bohr, hartree, gradient) GFN2 total, hartree
===========  ======================  ==================================  =====================

The three energy zeros differ by tens of eV per atom and the methods disagree on forces, so a
multi-task model cannot transfer between them without the bridging set that the demo recomputes
later with one common method (GFN1-xTB, the crystals' method).

Each database gets a ``train`` and a held-out ``test`` source file (separate files, so the held-out
part never reaches training whatever split logic is used).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml
from ase import Atoms
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from omni_model.demo import formats, systems

__all__ = ["DemoSize", "Database", "label", "tblite_calc", "make_calc", "manifest_dict", "write_manifest", "generate"]

FAMILIES: tuple[str, ...] = ("metals", "crystals", "molecules")
SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class DemoSize:
    """How many structures each database gets (per split)."""

    name: str
    metals: tuple[int, int]  # (train, test) structures
    crystals: tuple[int, int]
    molecules: tuple[int, int]  # (train, test) conformers per molecule
    n_molecules: int  # how many of systems.MOLECULES


SIZES: dict[str, DemoSize] = {
    "ci": DemoSize("ci", metals=(21, 16), crystals=(18, 6), molecules=(2, 8), n_molecules=8),
    "small": DemoSize("small", metals=(140, 160), crystals=(96, 24), molecules=(10, 14), n_molecules=12),
}
"""Held-out metals and molecules are many because the cross-domain rows split them again into a
calibration part (per-element offsets) and a test part (``run.CALIBRATION_FRACTION``): ``small``
keeps >= 100 test structures per row (~120 metals, ~126 molecules). ``ci`` is what the test
suite runs: every held-out structure is recomputed with GFN1-xTB (~0.2 s per job, ~0.6 s per
metal), so its rows stay small (~8 metals, ~32 molecules) and its numbers show plumbing only."""


@dataclass(frozen=True)
class Database:
    """What the demo wrote for one database."""

    family: str
    manifest: str  # manifest YAML path
    sources: dict[str, str]  # split -> source file path
    counts: dict[str, int]  # split -> structures written
    method: str


MANIFESTS: dict[str, dict] = {
    "metals": {
        "format": "asedb",
        "file": "metals-{split}.db",
        "description": "Demo metals: rattled fcc bulk, (111)/(100) slabs and binary alloys of Cu, Pd, Ag, "
        "Pt, Au, Ni, Al, labelled with ASE's EMT potential.",
        "level_of_theory": {"method": "EMT", "code": "ase.calculators.emt", "kind": "classical potential"},
        "energy": {"kind": "total", "note": "EMT energy: its zero is the EMT reference crystal, not a DFT total"},
    },
    "crystals": {
        "format": "extxyz",
        "file": "crystals-{split}.extxyz",
        "description": "Demo crystals: rattled, strained 8-atom cubic cells of MgO, NaCl, LiF, LiCl, Si "
        "and SiC, labelled with GFN1-xTB (tblite, Gamma point) incl. stress.",
        "level_of_theory": {"method": "GFN1-xTB", "code": "tblite", "kpoints": "Gamma"},
        "energy": {"kind": "total", "note": "GFN1-xTB total energy in eV"},
    },
    "molecules": {
        "format": "spice_hdf5",
        "file": "SPICE-demo-molecules-{split}.hdf5",
        "description": "Demo molecules: rattled conformers of small neutral organic molecules, labelled "
        "with GFN2-xTB (tblite) and stored in the SPICE HDF5 layout (bohr, hartree, gradients).",
        "level_of_theory": {"method": "GFN2-xTB", "code": "tblite"},
        "energy": {"kind": "total", "note": "GFN2-xTB total energy, stored in hartree as SPICE does"},
    },
}


def label(atoms: Atoms, calc: object) -> Atoms:
    """Evaluate ``calc`` on ``atoms`` and freeze energy, forces (and stress if periodic) on a copy."""
    atoms = atoms.copy()
    atoms.calc = calc
    results = {"energy": float(atoms.get_potential_energy()), "forces": atoms.get_forces().copy()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress(voigt=True).copy()
    frozen = atoms.copy()
    frozen.calc = SinglePointCalculator(frozen, **results)
    return frozen


def tblite_calc(method: str) -> object:
    """A tblite ASE calculator (quiet) for ``method`` such as "GFN1-xTB"."""
    from tblite.ase import TBLite

    return TBLite(method=method, verbosity=0)


def make_calc(method: str) -> object:
    """The calculator of a demo method: "EMT" or a tblite method name."""
    if method == "EMT":
        from ase.calculators.emt import EMT

        return EMT()
    return tblite_calc(method)


def _try_label(job: tuple[str, Atoms, bool]) -> Atoms | str:
    """Label one structure (in a worker process when ``--workers`` > 1); the error text on failure.

    ``one_thread`` (pool workers): the engine's OpenMP/BLAS threads are capped at one while it
    runs, so ``workers`` processes use ``workers`` cores (two tblite processes with two OpenMP
    threads each on two cores labelled the demo's crystals 2x slower than one process)."""
    method, atoms, one_thread = job
    try:
        calc = make_calc(method)  # loads the engine's libraries first, so the cap below reaches them
        if not one_thread:
            return label(atoms, calc)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return label(atoms, calc)
    except Exception as exc:  # tblite raises plain exceptions on SCF failure
        return f"{type(exc).__name__}: {exc}"


def _draw(
    make: Callable[[int], Atoms],
    method: str,
    count: int,
    where: str,
    failures: list[str],
    pool: Executor | None = None,
    max_failures: int = 20,
) -> list[tuple[int, Atoms]]:
    """Label ``count`` structures ``make(0), make(1), ...``; an SCF failure is recorded and redrawn.

    Returns (index passed to ``make``, labelled atoms) pairs in index order. Structures are built
    here in order (so the random stream does not depend on ``pool``); only labelling is parallel.
    """
    done: list[tuple[int, Atoms]] = []
    i = 0
    while len(done) < count:
        batch = [(j, make(j)) for j in range(i, i + count - len(done))]
        i += len(batch)
        jobs = [(method, atoms, pool is not None) for _, atoms in batch]
        results = list(pool.map(_try_label, jobs)) if pool is not None else [_try_label(j) for j in jobs]
        for (j, atoms), res in zip(batch, results):
            if isinstance(res, str):
                failures.append(f"{where}[{j}] {atoms.get_chemical_formula()}: {res}")
            else:
                done.append((j, res))
        if len(failures) > max_failures:
            raise RuntimeError(f"{where}: too many labelling failures: {failures[-3:]}")
    return done


def _write_metals(
    out: Path, size: DemoSize, rng: np.random.Generator, failures: list[str], pool: Executor | None
) -> dict[str, int]:
    counts = {}
    offset = 0
    for split, n in zip(SPLITS, size.metals):
        built: dict[int, systems.Structure] = {}

        def make(i: int, off: int = offset) -> Atoms:
            built[i] = systems.metal_structure(rng, off + i)
            return built[i].atoms

        rows = [
            (atoms, {"label": built[i].label, "group": built[i].group, "split": split})
            for i, atoms in _draw(make, "EMT", n, f"metals/{split}", failures, pool)
        ]
        formats.write_asedb(out / split / MANIFESTS["metals"]["file"].format(split=split), rows)
        counts[split] = len(rows)
        offset += n
    return counts


def _write_crystals(
    out: Path, size: DemoSize, rng: np.random.Generator, failures: list[str], pool: Executor | None
) -> dict[str, int]:
    counts = {}
    offset = 0
    for split, n in zip(SPLITS, size.crystals):
        built: dict[int, systems.Structure] = {}

        def make(i: int, off: int = offset) -> Atoms:
            built[i] = systems.crystal_structure(rng, off + i)
            return built[i].atoms

        frames = []
        for i, atoms in _draw(make, "GFN1-xTB", n, f"crystals/{split}", failures, pool):
            atoms.info.update(label=built[i].label, group=built[i].group, split=split)
            frames.append(atoms)
        formats.write_extxyz(out / split / MANIFESTS["crystals"]["file"].format(split=split), frames)
        counts[split] = len(frames)
        offset += n
    return counts


def _write_molecules(
    out: Path, size: DemoSize, rng: np.random.Generator, failures: list[str], pool: Executor | None
) -> dict[str, int]:
    names = list(systems.MOLECULES)[: size.n_molecules]
    counts = {}
    for split, per in zip(SPLITS, size.molecules):
        mols = []
        for name in names:
            mol = formats.SpiceMolecule(f"{name}-{split}", systems.MOLECULES[name], molecule(name).numbers)
            for _, atoms in _draw(
                lambda i, n=name: systems.molecule_conformer(n, rng),
                "GFN2-xTB",
                per,
                f"molecules/{split}/{name}",
                failures,
                pool,
            ):
                mol.positions.append(atoms.positions.copy())
                mol.energies.append(float(atoms.get_potential_energy()))
                mol.forces.append(atoms.get_forces().copy())
            mols.append(mol)
        formats.write_spice_hdf5(
            out / split / MANIFESTS["molecules"]["file"].format(split=split), mols, subset=f"Omni demo {split}"
        )
        counts[split] = sum(len(m.positions) for m in mols)
    return counts


def manifest_dict(family: str) -> dict:
    """The manifest mapping (see ``omni_data.manifest``) for one demo database."""
    spec = MANIFESTS[family]
    return {
        "name": f"demo-{family}",
        "dataset": f"demo_{family}",
        "task": family,
        "description": spec["description"],
        "format": spec["format"],
        "globs": [spec["file"].format(split="*")],
        "level_of_theory": spec["level_of_theory"],
        "energy": spec["energy"],
        "licence": "CC0-1.0 (generated by the Omni demo)",
        "citation": "Omni demo corpus, generated locally by omni_model.demo.generate",
        "weight": 1.0,
    }


def write_manifest(path: Path, family: str) -> Path:
    """Write the manifest YAML atomically and check that ``omni_data.manifest`` accepts it."""
    from omni_data.manifest import load_manifest

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(yaml.safe_dump(manifest_dict(family), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    load_manifest(path)
    return path


def generate(out_dir: Path, size: str = "small", seed: int = 0, workers: int = 1) -> dict[str, Database]:
    """Compute and write the three databases and their manifests under ``out_dir``.

    ``workers`` > 1 labels structures in that many processes; the output is the same.

    Layout: ``sources/{train,test}/<native file>``, ``manifests/demo-<family>.yaml`` and
    ``generation.json`` (counts, methods, timings, labelling failures that were redrawn).
    """
    if size not in SIZES:
        raise ValueError(f"unknown demo size {size!r}; known: {', '.join(SIZES)}")
    spec = SIZES[size]
    out_dir = Path(out_dir)
    src = out_dir / "sources"
    for split in SPLITS:
        (src / split).mkdir(parents=True, exist_ok=True)
    (out_dir / "manifests").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    writers = {"metals": _write_metals, "crystals": _write_crystals, "molecules": _write_molecules}
    result: dict[str, Database] = {}
    timings: dict[str, float] = {}
    failures: list[str] = []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        for family in FAMILIES:
            t0 = time.perf_counter()
            counts = writers[family](src, spec, rng, failures, pool)
            timings[family] = round(time.perf_counter() - t0, 2)
            manifest = write_manifest(out_dir / "manifests" / f"demo-{family}.yaml", family)
            result[family] = Database(
                family=family,
                manifest=str(manifest),
                sources={s: str(src / s / MANIFESTS[family]["file"].format(split=s)) for s in SPLITS},
                counts=counts,
                method=MANIFESTS[family]["level_of_theory"]["method"],
            )
    finally:
        if pool is not None:
            pool.shutdown()
    summary = {
        "size": asdict(spec),
        "seed": seed,
        "databases": {k: asdict(v) for k, v in result.items()},
        "seconds": timings,
        "labelling_failures_redrawn": failures,
    }
    tmp = out_dir / f".generation.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    os.replace(tmp, out_dir / "generation.json")
    return result
