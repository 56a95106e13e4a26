"""The table of source formats and the contract every reader module follows.

A reader module (``omni_data/readers/<name>.py``) exposes two plain functions:

``partitions(path: Path, target: int) -> list[Partition]``
    Split one source file (or directory, for formats that are directories) into pieces of about
    ``target`` records, cheaply (no full parse where avoidable). Partitions are the unit of Dask
    work and of shards; their ``key`` is stable across runs so a re-run finds finished shards.

``read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]``
    Stream the records of one partition in Omni units (``opts.convert`` applies the manifest's
    declared source units for formats whose units are not fixed by the format). A frame that
    cannot be parsed is yielded as ``Rejected`` with its position and reason, never skipped. A
    file that cannot be opened at all raises ``ReaderError`` naming it.

Adding a format touches one new module and one row of ``READERS``; nothing is imported until used.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from omni_data import units
from omni_data.schema import Record, Rejected

__all__ = [
    "READERS",
    "Partition",
    "ReaderModule",
    "frame_ranges",
    "ReadOptions",
    "ReaderError",
    "ReaderSpec",
    "find_sources",
    "get_reader",
    "sniff",
]


class ReaderError(RuntimeError):
    """A source file that cannot be read at all; the message names the file."""


@dataclass(frozen=True)
class Partition:
    """A slice of one source: records ``start`` (inclusive) to ``stop`` (exclusive, None = end).

    ``path`` is a file or, for directory formats, a directory. ``extra`` carries reader-specific
    locators (byte offsets, HDF5 group names, mp-ids) and must be JSON-serialisable.
    """

    path: str
    start: int = 0
    stop: int | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        """Stable identity of the partition (used to name its shard)."""
        tail = f"{self.start}-{'end' if self.stop is None else self.stop}"
        if self.extra:
            tail += "-" + "-".join(f"{k}={v}" for k, v in self.extra)
        return f"{self.path}::{tail}"

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.extra).get(name, default)


@dataclass
class ReadOptions:
    """What a reader needs to know beyond the file: which dataset, which keys, which units.

    ``key_map`` maps canonical names (``energy``, ``forces``, ``stress``, ``virial``, ``charge``,
    ``spin``, ``magmoms``, ``id``, ``group``) to the source's key names, e.g.
    ``{"energy": "REF_energy", "forces": "force"}``. ``energy_key`` picks between sources that carry
    both ``energy`` and ``free_energy``. ``options`` holds reader-specific settings from the manifest
    (e.g. the HDF5 level of theory to read).
    """

    dataset: str
    task: str
    key_map: dict[str, str] = field(default_factory=dict)
    energy_unit: str = "eV"
    length_unit: str = "Å"
    stress_unit: str = "eV/Å^3"
    stress_sign: int = 1
    energy_key: str = "energy"
    energy_kind: str = "total"
    options: dict[str, Any] = field(default_factory=dict)
    task_rules: tuple[Any, ...] = ()  # omni_data.tasks.TaskRule, applied by the ingest pipeline

    def key(self, canonical: str, default: str | None = None) -> str:
        return self.key_map.get(canonical, default if default is not None else canonical)

    def convert(self, record: Record) -> Record:
        """Scale a record given in the declared source units into eV, Å, eV/Å, eV/Å³ (ASE sign)."""
        e = units.energy_factor(self.energy_unit)
        length = units.length_factor(self.length_unit)
        if length != 1.0:
            record.positions = np.asarray(record.positions, dtype=np.float64) * length
            if record.cell is not None:
                record.cell = np.asarray(record.cell, dtype=np.float64) * length
        if record.energy is not None and e != 1.0:
            record.energy = float(record.energy) * e
        if record.forces is not None and (e != 1.0 or length != 1.0):
            record.forces = np.asarray(record.forces, dtype=np.float64) * (e / length)
        if record.stress is not None:
            factor = units.stress_factor(self.stress_unit) * self.stress_sign
            if factor != 1.0:
                record.stress = np.asarray(record.stress, dtype=np.float64) * factor
        return record

    def make_id(self, source_id: object) -> str:
        return f"{self.dataset}:{source_id}"


class ReaderModule(Protocol):
    def partitions(self, path: Path, target: int) -> list[Partition]: ...

    def read(self, part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]: ...


COMMON_OPTIONS: dict[str, str] = {
    "root": "folder the ids' file part is relative to (set by ingest to the --source folder)",
}
"""``ReadOptions.options`` every reader understands (``_common.source_label``)."""


@dataclass(frozen=True)
class ReaderSpec:
    """One row of the formats table. ``options``: the manifest ``reader_options`` this reader reads
    (name -> what it does), besides ``COMMON_OPTIONS``; any other option is a manifest error."""

    name: str
    module: str
    globs: tuple[str, ...]
    description: str
    magic: bytes | None = None
    options: tuple[tuple[str, str], ...] = ()
    records_validated: bool = False  # every Record it yields has passed record_checks.problem() and normalized()

    @property
    def option_names(self) -> tuple[str, ...]:
        """Every option name a manifest may give this reader (its own and ``COMMON_OPTIONS``)."""
        return tuple(sorted({name for name, _ in self.options} | set(COMMON_OPTIONS)))


def _spec(
    name: str,
    globs: tuple[str, ...],
    description: str,
    magic: bytes | None = None,
    options: dict[str, str] | None = None,
    records_validated: bool = False,
) -> ReaderSpec:
    return ReaderSpec(
        name, f"omni_data.readers.{name}", globs, description, magic, tuple((options or {}).items()), records_validated
    )


READERS: dict[str, ReaderSpec] = {
    s.name: s
    for s in [
        _spec(
            "extxyz",
            ("*.extxyz", "*.xyz", "*.extxyz.xz", "*.xyz.xz", "*.extxyz.gz"),
            "extended XYZ (ASE/MACE/OC20 S2EF)",
            options={
                "sidecar_txt": "true: read each frame's OC20 system id/frame/reference energy from <stem>.txt",
                "plain_xyz": "'sgdml': plain XYZ whose comment line is a bare energy and columns 5-7 forces",
            },
            records_validated=True,
        ),
        _spec("asedb", ("*.db",), "ASE database (sqlite)", b"SQLite format 3\x00"),
        _spec("aselmdb", ("*.aselmdb",), "fairchem ASE-on-LMDB (OMat24, sAlex, OMol25, ODAC)"),
        _spec(
            "vasp",
            ("vasprun.xml", "*vasprun.xml", "*vasprun.xml.gz", "OUTCAR", "*OUTCAR", "OUTCAR.gz"),
            "VASP vasprun.xml / OUTCAR, one record per ionic step",
            options={
                "keep_unconverged": "true: keep ionic steps whose electronic loop did not converge",
                "job_json": "true: link each result to the job.json beside it (omni-data emit-jobs folders)",
            },
        ),
        _spec(
            "mptrj_json", ("MPtrj*.json", "*mptrj*.json"), "MPtrj nested JSON (mp-id -> frame-id -> record), streamed"
        ),
        _spec(
            "matpes_json",
            (
                "MatPES*.json.gz",
                "*matpes*.json.gz",
                "*matpes*.json",
                "MatPES*.jsonl",
                "MatPES*.jsonl.gz",
                "*matpes*.jsonl",
            ),
            "MatPES gzipped JSON list or JSON lines",
        ),
        _spec("pyg_lmdb", ("*.lmdb",), "LMDB of pickled torch_geometric Data / dicts (OC20, OC22, ODAC23)"),
        _spec(
            "spice_hdf5",
            ("SPICE*.hdf5", "*SPICE*.hdf5", "*spice*.hdf5"),
            "SPICE HDF5 (atomic units, gradients)",
            options={
                "energy": "HDF5 dataset holding the energy (default dft_total_energy)",
                "gradient": "HDF5 dataset holding the gradient (default dft_total_gradient)",
                "subsets": "list of SPICE subset names to keep (default all)",
            },
        ),
        _spec(
            "ani_hdf5",
            ("ani*.h5", "ANI*.h5", "*ani*.hdf5", "*ani*.h5", "*ANI*.hdf5", "*transition1x*.h5", "Transition1x*.h5"),
            "ANI-1x/ANI-2x/Transition1x HDF5",
            options={
                "level": "level of theory to read (default wb97x_dz; Transition1x: its own)",
                "energy": "HDF5 dataset holding energies (default energies)",
                "forces": "HDF5 dataset holding forces (default forces)",
            },
        ),
        _spec(
            "qcml",
            ("*.tfrecord", "*.tfrecord.gz", "*.tfrecord-*"),
            "QCML TFRecord shards",
            options={
                "force_unit": "unit of the force arrays when not energy/length, e.g. hartree/bohr",
                "verify_crc": "false: skip the TFRecord CRC checks (default true)",
            },
        ),
    ]
}


def get_reader(name: str) -> ReaderModule:
    """Import and return the reader module registered as ``name``."""
    try:
        spec = READERS[name]
    except KeyError:
        raise ValueError(f"unknown reader {name!r}; known: {', '.join(sorted(READERS))}") from None
    module: ModuleType = importlib.import_module(spec.module)
    return module  # type: ignore[return-value]


def sniff(path: Path) -> str:
    """The reader name for ``path`` by magic bytes, then by file-name glob; ValueError if none fits."""
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as fh:
            head = fh.read(64)
        for spec in READERS.values():
            if spec.magic and head.startswith(spec.magic):
                return spec.name
    for spec in READERS.values():
        if any(fnmatch.fnmatch(path.name, g) for g in spec.globs):
            return spec.name
    raise ValueError(f"{path}: no reader recognises this file; pass --format (one of {', '.join(READERS)})")


def find_sources(root: Path, reader: str, globs: tuple[str, ...] | None = None) -> list[Path]:
    """Every source file under ``root`` (a file or directory) matching the reader's globs, sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.exists():
        raise ReaderError(f"{root}: source path does not exist")
    patterns = globs or READERS[reader].globs
    found = sorted({p for g in patterns for p in root.rglob(g) if p.is_file()})
    if not found:
        raise ReaderError(f"{root}: no files matching {', '.join(patterns)} for reader {reader!r}")
    return found


def frame_ranges(n_records: int, target: int) -> list[tuple[int, int]]:
    """Split ``range(n_records)`` into consecutive (start, stop) chunks of at most ``target``."""
    target = max(1, int(target))
    return [(s, min(s + target, n_records)) for s in range(0, n_records, target)]
