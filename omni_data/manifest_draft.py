"""``omni-data manifest draft FILE``: a manifest written from what a user's own file holds.

The file's reader is sniffed (``omni_data.readers.sniff``; for a folder, the format most of its
files have, ``omni_data.pipeline.resolve.sniff_source``), or given; its first records are read,
and the draft lists the labels found and the source key each came from (``key_map``), the other
keys seen, and guessed units. Lines the user must write are ``""  # FILL IN: ...``; guesses to
check end in ``# review: ...``. Until the FILL IN lines are written, loading the draft reports
every missing key at once (``omni_data.typedconfig``); once they are, it validates as it is.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from omni_data.readers import (
    READERS,
    ReaderError,
    ReadOptions,
    find_sources,
    get_reader,
)
from omni_data.schema import Record, Rejected
from omni_data.units import ENERGY_UNITS, HARTREE_EV

__all__ = ["Draft", "draft_manifest", "guess_energy_unit", "sniff_draft_source", "write_draft"]

LABELS = ("energy", "forces", "stress", "magmoms", "charge", "spin")
FILL_IN = "# FILL IN"
REVIEW = "# review"
# Approximate all-electron atomic energies (hartree, Hartree-Fock limit), H..Ar: a molecule's total
# energy is close to their sum, so the ratio of a stored energy to it tells hartree, eV, kcal/mol.
ATOM_HARTREE: dict[int, float] = {
    1: -0.500,
    2: -2.862,
    3: -7.433,
    4: -14.573,
    5: -24.529,
    6: -37.689,
    7: -54.401,
    8: -74.809,
    9: -99.409,
    10: -128.547,
    11: -161.859,
    12: -199.615,
    13: -241.877,
    14: -288.854,
    15: -340.719,
    16: -397.505,
    17: -459.482,
    18: -526.817,
}
_PLAIN_KEY = re.compile(r"^[A-Za-z_][\w\-.]*$")
_ASE_PREFIXES = ("key_value_pairs.", "data.", "calc.", "calculator.")


@dataclass
class Draft:
    """What was found in the file and the manifest text written from it."""

    source: Path
    reader: str
    records: list[Record]
    rejected: list[str]
    key_map: dict[str, str] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)  # label -> records that carry it
    other_keys: list[str] = field(default_factory=list)
    text: str = ""


def guess_energy_unit(records: list[Record]) -> tuple[str, str]:
    """(unit, why) for the energies of ``records``: hartree, eV or kcal/mol/kJ/mol when the energy
    is near the sum of all-electron atomic energies in that unit (light elements only), else eV
    when energies per atom are small (pseudopotential codes), else eV with a warning."""
    pairs = [(float(r.energy), r.numbers) for r in records if r.energy is not None]
    if not pairs:
        return "eV", "no energy found to guess from"
    energy, numbers = pairs[0]
    per_atom = energy / max(len(numbers), 1)
    if all(int(z) in ATOM_HARTREE for z in numbers):
        reference = sum(ATOM_HARTREE[int(z)] for z in numbers)
        for unit in ("hartree", "eV", "kcal/mol", "kJ/mol"):
            ratio = energy / (reference * HARTREE_EV / ENERGY_UNITS[unit])
            if 0.95 <= ratio <= 1.1:
                return unit, (f"energy {energy:.6g} is {ratio:.3f} x the all-electron atomic energies in {unit}")
    if abs(per_atom) < 100:
        return "eV", f"energy per atom {per_atom:.4g}: the size of pseudopotential energies in eV"
    return "eV", f"energy per atom {per_atom:.4g} fits no unit guessed here; find the unit in the source"


def _guess_length(records: list[Record]) -> tuple[str, str]:
    """(unit, why) from the shortest distance in the first molecule-sized record."""
    for r in records:
        pos = np.asarray(r.positions, dtype=np.float64)
        if 1 < len(pos) <= 500:
            d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
            shortest = float(d[np.triu_indices(len(pos), 1)].min())
            if shortest > 1.6 and 1 in {int(z) for z in r.numbers}:
                return "bohr", f"shortest distance {shortest:.3f} with hydrogen present: bohr?"
            return "Å", f"shortest distance {shortest:.3f} (in Å: 0.7-3 is usual)"
    return "Å", "one atom per record: nothing to guess from"


def _guess_stress(records: list[Record]) -> tuple[str, str]:
    values = [float(np.abs(r.stress).max()) for r in records if r.stress is not None]
    if not values:
        return "eV/Å^3", ""
    biggest = max(values)
    if biggest < 1.0:
        return "eV/Å^3", f"largest |stress| {biggest:.4g}: eV/Å^3 scale (1 GPa = 0.00624 eV/Å^3)"
    return "GPa", f"largest |stress| {biggest:.4g}: too large for eV/Å^3; GPa or kbar (check the source)"


def _source_key(reader: str, where: Any) -> str | None:
    """The key a record's ``<label>_source_key`` names, when it can go in ``key_map`` as it is."""
    if not isinstance(where, str):
        return None
    if reader in ("asedb", "aselmdb"):
        for prefix in _ASE_PREFIXES:
            where = where.removeprefix(prefix)
    return where if _PLAIN_KEY.match(where) else None


def _named_like(path: Path, reader: str) -> bool:
    """True when ``path``'s own name fits ``reader``'s globs (``x.lmdb/``, an LMDB environment)."""
    return any(fnmatch.fnmatch(path.name, g) for g in READERS[reader].globs)


def sniff_draft_source(source: Path) -> str:
    """The reader for a file, or for a folder the format most of its files have
    (``pipeline.resolve.sniff_source``), else the reader its own name fits (``x.lmdb/``);
    ValueError naming the file or the folder when none fits."""
    from omni_data.pipeline.resolve import sniff_source

    source = Path(source)
    try:
        return sniff_source(source)
    except ValueError:
        named = [name for name in READERS if source.is_dir() and _named_like(source, name)]
        if named:
            return named[0]
        raise


def _draft_files(source: Path, reader: str) -> list[Path]:
    """The files to draft from: a file itself; a folder's files the reader's globs match, or the
    folder as one source when none does and its name fits the reader (``x.lmdb/``)."""
    if not source.is_dir():
        return [source]
    try:
        return find_sources(source, reader)
    except ReaderError:
        if _named_like(source, reader):
            return [source]
        raise  # names the folder and the globs looked for


def _read_some(paths: list[Path], reader: str, n: int) -> tuple[list[Record], list[str]]:
    """Up to ``n`` records from ``paths`` in turn, and the reasons of those the reader refused."""
    module = get_reader(reader)
    opts = ReadOptions(dataset="draft", task="draft")
    records: list[Record] = []
    rejected: list[str] = []
    for path in paths:
        for part in module.partitions(path, max(n, 1)):
            for item in islice(module.read(part, opts), n - len(records)):
                if isinstance(item, Rejected):
                    rejected.append(f"#{item.source_index}: {item.reason}")
                else:
                    records.append(item)
            if len(records) >= n:
                return records, rejected
    return records, rejected


def draft_manifest(source: Path, reader: str | None = None, n_records: int = 5, name: str | None = None) -> Draft:
    """Read up to ``n_records`` of ``source`` and write the manifest text (``Draft.text``)."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    reader = reader or sniff_draft_source(source)
    if reader not in READERS:
        raise ValueError(f"unknown reader {reader!r}; known: {', '.join(READERS)}")
    records, rejected = _read_some(_draft_files(source, reader), reader, n_records)
    if not records:
        why = f" (rejected: {rejected[0]})" if rejected else ""
        raise ValueError(f"{source}: the {reader} reader found no record to draft from{why}")
    draft = Draft(source, reader, records, rejected)
    others: dict[str, None] = {}
    for r in records:
        for label in LABELS:
            if getattr(r, label) is not None:
                draft.found[label] = draft.found.get(label, 0) + 1
                key = _source_key(reader, r.metadata.get(f"{label}_source_key"))
                if key is not None:
                    draft.key_map.setdefault(label, key)
        energies = [str(k) for k in r.metadata.get("energy_other_keys") or []]
        others.update((f"{key} (another energy)", None) for key in energies)
        others.update((str(key), None) for key in r.metadata.get("info") or {} if str(key) not in energies)
    draft.other_keys = list(others)
    draft.text = _render(draft, name or _name_from(source))
    return draft


def _name_from(source: Path) -> str:
    stem = source.name.split(".")[0] if source.is_file() else source.name
    return re.sub(r"[^a-z0-9_]+", "_", stem.lower()).strip("_") or "my_dataset"


def _q(value: Any) -> str:
    """A YAML scalar (JSON is YAML; keeps unicode as written)."""
    return json.dumps(value, ensure_ascii=False)


def _render(d: Draft, name: str) -> str:
    n = len(d.records)
    spec = READERS[d.reader]
    e_unit, e_why = guess_energy_unit(d.records)
    l_unit, l_why = _guess_length(d.records)
    s_unit, s_why = _guess_stress(d.records)
    periodic = sum(r.cell is not None for r in d.records)
    elements = sorted({int(z) for r in d.records for z in r.numbers})
    lines = [
        f"# Manifest drafted by `omni-data manifest draft` from {d.source}",
        f"# ({d.reader} reader: {spec.description}; {n} records read, {len(d.rejected)} rejected;",
        f"# {periodic} of {n} periodic; atomic numbers {elements}).",
        f"# Write every line marked {FILL_IN!r}, check every line marked {REVIEW!r}, then run",
        f"#   omni-data ingest THIS.yaml --source {d.source} --out STORE",
        f"name: {_q(name)}",
        f"task: {_q(name)}  {REVIEW}: the task = one level of theory; datasets computed alike share it",
        f'description: ""  {FILL_IN}: what the structures are and how they were made',
        f"format: {d.reader}",
        "level_of_theory:",
        f'  code: ""  {FILL_IN}: e.g. VASP 6.4, Psi4 1.9, Quantum ESPRESSO',
        f'  functional: ""  {FILL_IN}: e.g. PBE, r2SCAN, wB97M-D3(BJ)',
        f'  basis: ""  {FILL_IN}: e.g. plane waves 520 eV, def2-TZVPPD',
        f'licence: ""  {FILL_IN}: e.g. CC-BY-4.0',
        f'citation: ""  {FILL_IN}: the paper or record to cite',
        f"globs: {_q(list(spec.globs))}",
    ]
    lines += _key_map_lines(d, n)
    lines += ["units:", f"  energy: {_q(e_unit)}  {REVIEW}: {e_why}", f"  length: {_q(l_unit)}  {REVIEW}: {l_why}"]
    if "stress" in d.found:
        lines.append(f"  stress: {_q(s_unit)}  {REVIEW}: {s_why}")
    lines += [f"energy: {{kind: total}}  {REVIEW}: total, free, referenced or corrected", "group_key: id"]
    return "\n".join(lines) + "\n"


def _key_map_lines(d: Draft, n: int) -> list[str]:
    lines = [
        f"# labels found in the first {n} records: " + (", ".join(f"{k} {c}/{n}" for k, c in d.found.items()) or "none")
    ]
    if "energy" not in d.found:
        lines.append(f"# NO ENERGY found: map the file's energy key below (key_map: {{energy: KEY}}) {REVIEW}")
    if d.other_keys:
        lines.append(f"# other keys in the file (not read as labels): {', '.join(d.other_keys)}")
    if not d.key_map:
        return lines + ["key_map: {}  # the reader's own keys were used"]
    lines.append("key_map:")
    lines += [
        f"  {label}: {_q(key)}  {REVIEW}: found in {d.found[label]}/{n} records" for label, key in d.key_map.items()
    ]
    return lines


def write_draft(draft: Draft, out: Path, overwrite: bool = False) -> Path:
    """Write ``draft.text`` to ``out`` (refusing to replace a file unless ``overwrite``)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(draft.text, encoding="utf-8")
    tmp.replace(out)
    return out
