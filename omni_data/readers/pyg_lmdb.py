"""LMDB of pickled records: OC20/OC22/ODAC23 (torch_geometric ``Data``) and matsciml dev sets (dicts).

Layout (fairchem ``LmdbDataset``): a single-file LMDB (``subdir=False``) whose keys are
``str(index).encode("ascii")`` and whose values are ``pickle.dumps`` of one PyG ``Data`` (OC20
S2EF: ``pos``, ``cell`` (1,3,3), ``atomic_numbers``, ``natoms``, ``tags``, ``fixed``, ``force``,
``y``, ``sid``, ``fid``) or of a dict (matsciml: ``pos``/``cell``/``force``/``energy`` tensors, or a
pymatgen ``structure`` dict with ``targets.regression.energy_total``). A ``length`` key may hold
the count. Values are read through ``_pickle_tensors.loads_record`` (restricted unpickler, no
torch needed); a value naming any other global (or over a size cap) is quarantined as
``unsafe_pickle:<key> ...``, one that does not unpickle as ``parse:<key> ...``, and the rest of the
partition is still read. The file is checked against its meta pages before it is mapped
(``_lmdb_check``): a truncated download is a ReaderError, not a SIGBUS.

Key map (``opts.key_map``, canonical -> source key, dotted paths reach into nested dicts) overrides
the declared candidates in ``CANDIDATES``. Units are the dataset's (``opts.convert``).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from omni_data import units
from omni_data.readers import Partition, ReaderError, ReadOptions
from omni_data.readers._common import json_scalar, source_label
from omni_data.readers._finish import finish, reject
from omni_data.readers._lmdb_check import check_lmdb_file, damaged, lmdb_errors
from omni_data.readers._pickle_tensors import loads_record
from omni_data.readers._pmg import structure_arrays
from omni_data.safeio import UnsafePickleError
from omni_data.schema import STRESS_ASYMMETRY_KEY, Record, Rejected, symmetric_voigt

__all__ = ["partitions", "to_record", "read"]

META_KEYS = frozenset({b"length", b"metadata"})
"""Keys that describe the LMDB, not records (fairchem writes ``length``)."""

CANDIDATES: dict[str, tuple[str, ...]] = {
    "positions": ("pos", "positions"),
    "numbers": ("atomic_numbers", "numbers"),
    "cell": ("cell",),
    "pbc": ("pbc",),
    "energy": ("energy", "y", "targets.regression.energy_total"),
    "forces": ("forces", "force"),
    "stress": ("stress",),
    "magmoms": ("magmoms", "magmom"),
    "charge": ("charge",),
    "spin": ("spin",),
    "fixed": ("fixed",),
    "tags": ("tags",),
    "id": ("id",),
}
"""Declared source names per canonical field, tried in order when the key map names none."""


def _open(path: str | Path) -> Any:
    """A read-only, lock-free environment, after checking the file is whole (no SIGBUS)."""
    import lmdb

    p = Path(path)
    check_lmdb_file(p)
    try:
        return lmdb.open(
            str(p), subdir=p.is_dir(), readonly=True, lock=False, readahead=False, meminit=False, max_readers=64
        )
    except lmdb.Error as exc:
        raise ReaderError(f"{p}: cannot open as LMDB ({exc})") from exc


def _int_key(key: bytes) -> int | None:
    return int(key) if key.isdigit() and (key == b"0" or not key.startswith(b"0")) else None


def partitions(path: Path, target: int) -> list[Partition]:
    """Ranges of record indices, from one pass over the keys (memory O(records / target)).

    Integer keys 0..N-1 (fairchem's layout) are read by key; any other key set is read in LMDB
    (byte) order from the first key of each range, stored hex-encoded in ``extra``."""
    target = max(1, int(target))
    env = _open(path)
    n, all_int, largest, firsts = 0, True, -1, []
    try:
        with lmdb_errors(path), env.begin() as txn:
            for key in txn.cursor().iternext(keys=True, values=False):
                if key in META_KEYS:
                    continue
                if n % target == 0:
                    firsts.append(key)
                as_int = _int_key(key) if all_int else None
                if as_int is None:
                    all_int = False
                else:
                    largest = max(largest, as_int)
                n += 1
    finally:
        env.close()
    ranges = [(s, min(s + target, n)) for s in range(0, n, target)]
    if all_int and largest == n - 1:  # n distinct integers in 0..n-1: exactly range(n)
        return [Partition(str(path), a, b, (("keys", "int"),)) for a, b in ranges]
    return [Partition(str(path), a, b, (("first", k.hex()),)) for (a, b), k in zip(ranges, firsts)]


def _keys(txn: Any, part: Partition) -> Iterator[tuple[int, bytes, bytes | None]]:
    stop = part.stop if part.stop is not None else 2**62
    if part.get("keys") == "int":
        for i in range(part.start, stop):
            key = str(i).encode("ascii")
            value = txn.get(key)
            if value is None and part.stop is None:
                return
            yield i, key, value
        return
    cursor = txn.cursor()
    first = bytes.fromhex(part.get("first", "")) if part.get("first") else b""
    if not cursor.set_range(first):
        return
    i = part.start
    for key, value in cursor:
        if key in META_KEYS:
            continue
        if i >= stop:
            return
        yield i, key, value
        i += 1


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _field(data: dict[str, Any], opts: ReadOptions, name: str) -> tuple[Any, str | None]:
    """(value, source key) of canonical ``name``: the key map's name, else the declared candidates."""
    names = (opts.key_map[name],) if name in opts.key_map else CANDIDATES.get(name, (name,))
    for key in names:
        value = _lookup(data, key)
        if value is not None:
            return value, key
    return None, None


def _scalar(value: Any) -> float:
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"expected a scalar, got shape {arr.shape}")
    return float(arr.reshape(-1)[0])


def _id_part(value: Any) -> Any:
    """An id component: size-1 arrays (tensor sids) unwrapped, bytes decoded."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    safe = json_scalar(value)
    return value if safe is None else safe


def _voigt(value: Any, opts: ReadOptions) -> tuple[np.ndarray, float]:
    """Voigt stress of 6 values, or the symmetric part of 9 ((3,3) or OC-style (1,3,3)) with its
    asymmetry in eV/Å³ (``schema.symmetric_voigt``)."""
    return symmetric_voigt(value, units.stress_factor(opts.stress_unit))


def _metadata(data: dict[str, Any], used: set[str], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if name in used or key in ("structure",):
            continue
        if isinstance(value, dict) and prefix.count(".") < 3:
            out.update(_metadata(value, used, f"{name}."))
            continue
        if isinstance(value, np.ndarray):
            if value.size != 1:
                continue  # per-atom/edge arrays (edge_index, cell_offsets, ...) are not metadata
            value = value.reshape(-1)[0]
        safe = json_scalar(value)
        if safe is not None:
            out[name] = safe
    return out


def to_record(data: dict[str, Any], opts: ReadOptions, source_file: str, index: int, fallback_id: str) -> Record:
    """Build one (unconverted) Record from an unpickled dict; ValueError/KeyError on bad content."""
    used: set[str] = set()
    struct = data.get("structure")
    if isinstance(struct, dict) and "sites" in struct and "positions" not in opts.key_map:
        numbers, positions, cell, pbc = structure_arrays(struct)
    else:
        pos, kp = _field(data, opts, "positions")
        z, kz = _field(data, opts, "numbers")
        if pos is None or z is None:
            raise KeyError("positions/atomic_numbers")
        used |= {kp, kz}  # type: ignore[arg-type]
        numbers, positions = np.asarray(z).reshape(-1), np.asarray(pos, dtype=np.float64).reshape(-1, 3)
        raw_cell, kc = _field(data, opts, "cell")
        cell = None if raw_cell is None else np.asarray(raw_cell, dtype=np.float64).reshape(3, 3)
        raw_pbc, kb = _field(data, opts, "pbc")
        used |= {k for k in (kc, kb) if k}
        if raw_pbc is not None:
            pbc = np.asarray(raw_pbc).astype(bool).reshape(3)
        else:  # OC20/OC22/ODAC Data carry no pbc: a cell means periodic (fairchem's convention)
            pbc = np.full(3, cell is not None)
    natoms = data.get("natoms")
    if natoms is not None and _scalar(natoms) != len(numbers):
        raise ValueError(f"natoms {natoms} != {len(numbers)} atoms")
    values: dict[str, Any] = {}
    for name in ("energy", "forces", "stress", "magmoms", "charge", "spin", "fixed", "tags"):
        value, key = _field(data, opts, name)
        if key:
            used.add(key)
        values[name] = value
    stress, asym = (None, 0.0) if values["stress"] is None else _voigt(values["stress"], opts)
    sid, fid = data.get("sid"), data.get("fid")
    raw_id, kid = _field(data, opts, "id")
    if raw_id is not None:
        source_id = str(_id_part(raw_id))
    elif sid is not None and fid is not None:
        source_id = f"{_id_part(sid)}_{_id_part(fid)}"
    elif data.get("entry_id") is not None:
        source_id = str(data["entry_id"])
    else:
        source_id = fallback_id
    record = Record(
        numbers=numbers,
        positions=positions,
        id=opts.make_id(source_id),
        dataset=opts.dataset,
        task=opts.task,
        cell=cell,
        pbc=pbc,
        energy=None if values["energy"] is None else _scalar(values["energy"]),
        energy_kind=opts.energy_kind,
        forces=None if values["forces"] is None else np.asarray(values["forces"], dtype=np.float64).reshape(-1, 3),
        stress=stress,
        magmoms=None if values["magmoms"] is None else np.asarray(values["magmoms"], dtype=np.float64).reshape(-1),
        charge=None if values["charge"] is None else _scalar(values["charge"]),
        spin=None if values["spin"] is None else _scalar(values["spin"]),  # judged by the schema
        fixed=None if values["fixed"] is None else np.asarray(values["fixed"]).astype(bool).reshape(-1),
        tags=None if values["tags"] is None else np.asarray(values["tags"]).astype(np.int64).reshape(-1),
        source_file=source_file,
        source_index=index,
        metadata=_metadata(data, used | ({kid} if kid else set())),
    )
    if asym > 0:
        record.metadata[STRESS_ASYMMETRY_KEY] = asym
    return record


def _key_text(key: bytes) -> str:
    return key.decode("ascii", "backslashreplace")


def _refusal(exc: BaseException, where: str, key: bytes) -> str:
    """Quarantine reason for a value that could not be unpickled: ``unsafe_pickle:<key> ...`` when
    the restricted unpickler refused it (a global off the allow-list, a size cap), else
    ``parse:<key> ...`` (a corrupt or truncated stream)."""
    msg = str(exc)
    msg = msg[len(where) + 2 :] if msg.startswith(f"{where}: ") else msg
    cause = exc.__cause__
    refused = isinstance(exc, UnsafePickleError) and (cause is None or isinstance(cause, UnsafePickleError))
    if refused:
        return f"unsafe_pickle:{_key_text(key)} {msg}"
    if not isinstance(exc, pickle.UnpicklingError):
        msg = f"cannot unpickle ({type(exc).__name__}: {msg})"
    return f"parse:{_key_text(key)} {msg}"


def _item(value: bytes, key: bytes, index: int, part: Partition, opts: ReadOptions, label: str) -> Record | Rejected:
    """One LMDB value as a Record, or a Rejected naming the key (nothing here stops the partition)."""
    where = f"{part.path} key {key!r}"
    try:
        data = loads_record(value, where)
    except Exception as exc:  # any value that does not unpickle is that record's problem only
        return reject(opts, part.path, index, _refusal(exc, where, key), key.decode("latin1"))
    if not isinstance(data, dict):
        return reject(
            opts, part.path, index, f"parse:value is {type(data).__name__}, not a dict or Data", key.decode("latin1")
        )
    try:
        record = to_record(data, opts, part.path, index, f"{label}/{key.decode('latin1')}")
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError) as exc:
        return reject(opts, part.path, index, f"parse:{type(exc).__name__}: {exc}", key.decode("latin1"))
    return finish(record, opts)


_PROBE = pickle.dumps({}, protocol=2)


def _check_unpickler(path: str) -> None:
    """Unpickle a known-good value once, so a bad unpickler setting (``$OMNI_PICKLE_MAX_BYTES``)
    fails the partition with its own message instead of quarantining every record."""
    loads_record(_PROBE, f"{path} (unpickler settings check)")


def read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]:
    """Records of one partition; a value that is refused (unsafe pickle), does not unpickle or is
    malformed becomes a Rejected naming its key, and the rest of the partition is still read."""
    import lmdb

    _check_unpickler(part.path)
    env = _open(part.path)
    label = source_label(part.path, opts)
    key: bytes | None = None
    try:
        with env.begin(buffers=False) as txn:
            for index, key, value in _keys(txn, part):
                if value is None:
                    yield reject(opts, part.path, index, "missing:lmdb key", key.decode("latin1"))
                    continue
                yield _item(value, key, index, part, opts, label)
    except lmdb.Error as exc:  # a damaged page: the rest of this partition cannot be reached
        raise damaged(part.path, exc, f"after key {key!r}" if key is not None else "") from exc
    finally:
        env.close()
