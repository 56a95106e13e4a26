"""Allocation limits and numpy stand-ins for ``safeio``'s restricted unpickler.

Why: a pickle names sizes (``bytearray(n)``, an array shape, a tensor size) that cost nothing to
write and everything to honour: 35 bytes asking ``bytearray(1 << 30)`` allocate 1 GiB. Every size
an allow-listed callable is asked for is charged against one budget per load:
``min(hard_cap, max(factor x len(pickle), floor))`` bytes in all (``PickleLimits``); going over
raises ``UnsafePickleError`` naming what was asked and the limit, before anything is allocated.

numpy's own ``dtype.__setstate__`` trusts its state (flags claiming object items, fields holding
any object, any itemsize), so a pickle never gets a real dtype or array to ``BUILD``:
``numpy.dtype`` yields a ``DtypeSpec`` and ``_reconstruct`` an ``ArraySpec``, whose
``__setstate__`` checks the state and builds the real dtype/array from plain descriptions;
``finalize`` swaps the stand-ins for what they built once the load ends.
"""

from __future__ import annotations

import contextvars
import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

GIB = 1 << 30
MAX_DEPTH = 500
ENV_MAX_BYTES = "OMNI_PICKLE_MAX_BYTES"


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global that is not allowed, or for more memory than its size permits."""


# --------------------------------------------------------------------------- budget
@dataclass(frozen=True)
class PickleLimits:
    """What one load may allocate: ``factor`` x the pickle's length, at least ``floor``, at most
    ``hard_cap`` bytes (all allocations of the load together)."""

    factor: int = 16
    floor: int = 1 << 20
    hard_cap: int = 2 * GIB

    def for_length(self, n_bytes: int | None) -> int:
        if n_bytes is None:
            return self.hard_cap
        return min(self.hard_cap, max(self.floor, self.factor * n_bytes))

    def describe(self, n_bytes: int | None) -> str:
        size = "unknown size" if n_bytes is None else f"{n_bytes:,} pickled bytes"
        return f"{self.for_length(n_bytes):,} bytes for {size} ({self.factor} x, at least {self.floor:,}, at most {self.hard_cap:,})"


def default_limits() -> PickleLimits:
    """``PickleLimits()`` with the hard cap from ``$OMNI_PICKLE_MAX_BYTES`` when set."""
    raw = os.environ.get(ENV_MAX_BYTES, "").strip()
    if not raw:
        return PickleLimits()
    try:
        cap = int(raw)
    except ValueError:
        raise ValueError(f"${ENV_MAX_BYTES} must be a number of bytes, got {raw!r}") from None
    if cap < 1:
        raise ValueError(f"${ENV_MAX_BYTES} must be >= 1, got {cap}")
    return PickleLimits(hard_cap=cap)


class Budget:
    """The bytes one load has been granted so far; ``pending`` counts stand-ins to finalize."""

    def __init__(self, what: str, limits: PickleLimits, n_bytes: int | None) -> None:
        self.what, self.limits, self.n_bytes = what, limits, n_bytes
        self.limit = limits.for_length(n_bytes)
        self.used = 0
        self.pending = 0

    def charge(self, n: int, asked: str) -> None:
        if n < 0:
            raise UnsafePickleError(f"{self.what}: pickle asks for a negative size ({asked})")
        if self.used + n > self.limit:
            already = f" ({self.used:,} already granted)" if self.used else ""
            raise UnsafePickleError(
                f"{self.what}: pickle asks for {asked} = {n:,} bytes{already}, over the limit of "
                f"{self.limits.describe(self.n_bytes)}"
            )
        self.used += n


CURRENT: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("omni_pickle_budget", default=None)


def charge(n: int, asked: str) -> None:
    """Charge ``n`` bytes to the load in progress (outside a load: against the default hard cap)."""
    budget = CURRENT.get()
    if budget is None:
        budget = Budget("pickle", default_limits(), None)
    budget.charge(int(n), asked)


def hard_cap() -> int:
    """The hard cap of the load in progress (else the default's)."""
    budget = CURRENT.get()
    return budget.limits.hard_cap if budget is not None else default_limits().hard_cap


def _pending() -> None:
    budget = CURRENT.get()
    if budget is not None:
        budget.pending += 1


def _shape(shape: Any, what: str) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or len(shape) > 64:
        raise UnsafePickleError(f"{what}: shape must be a tuple of at most 64 ints, got {shape!r:.80}")
    out = []
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise UnsafePickleError(f"{what}: bad shape {shape!r:.80}")
        out.append(int(n))
    return tuple(out)


def nbytes(shape: tuple[int, ...], itemsize: int) -> int:
    """Bytes an array of ``shape`` needs (zero-size items counted as one byte, so a count of
    empty strings is still charged)."""
    total = max(int(itemsize), 1)
    for n in shape:
        total *= n
    return total


# --------------------------------------------------------------------------- dtypes
_DTYPE_STR = re.compile(r"^[biufcSUVMm][0-9]{0,12}$")
_DATETIME_UNIT = re.compile(r"^(Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as|generic)$")


def as_dtype(value: Any, what: str = "numpy") -> np.dtype:
    """The real dtype a pickled dtype stands for (a ``DtypeSpec``, or a dtype from Python code)."""
    if isinstance(value, DtypeSpec):
        return value.dtype
    if isinstance(value, np.dtype) and not value.hasobject:
        return value
    raise UnsafePickleError(f"{what}: expected a numpy dtype, got {type(value).__name__}")


def _sub_dtype(value: Any) -> np.dtype:
    if not isinstance(value, DtypeSpec):
        raise UnsafePickleError(f"numpy dtype state: field type must be a dtype, got {type(value).__name__}")
    return value.dtype


def _structured(names: Any, fields: Any, elsize: int, align: bool) -> np.dtype:
    if not (isinstance(names, tuple) and all(isinstance(n, str) for n in names) and isinstance(fields, dict)):
        raise UnsafePickleError("numpy dtype state: names must be a tuple of str and fields a dict")
    formats, offsets, titles = [], [], []
    for name in names:
        spec = fields.get(name)
        if not (isinstance(spec, tuple) and len(spec) in (2, 3)):
            raise UnsafePickleError(f"numpy dtype state: field {name!r} must be (dtype, offset[, title])")
        if isinstance(spec[1], bool) or not isinstance(spec[1], int) or spec[1] < 0:
            raise UnsafePickleError(f"numpy dtype state: field {name!r} has a bad offset {spec[1]!r:.40}")
        title = spec[2] if len(spec) == 3 else None
        if title is not None and not isinstance(title, str):
            raise UnsafePickleError(f"numpy dtype state: field {name!r} has a non-str title")
        formats.append(_sub_dtype(spec[0]))
        offsets.append(spec[1])
        titles.append(title)
    return np.dtype(
        {"names": list(names), "formats": formats, "offsets": offsets, "titles": titles, "itemsize": elsize},
        align=align,
    )


def build_dtype(obj: str, align: bool, state: tuple | None) -> np.dtype:
    """The dtype ``numpy.dtype(obj, align, copy)`` followed by ``__setstate__(state)`` describes,
    built from checked plain parts (never numpy's trusting ``__setstate__``)."""
    base = np.dtype(obj)
    if state is None:
        return base
    if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
        raise UnsafePickleError(f"numpy dtype state must be a version 3 or 4 tuple, got {state!r:.80}")
    endian, subarray, names, fields, elsize = state[1:6]
    if endian not in ("<", ">", "|", "="):
        raise UnsafePickleError(f"numpy dtype state: bad byte order {endian!r:.20}")
    if isinstance(elsize, bool) or not isinstance(elsize, int) or elsize < -1:
        raise UnsafePickleError(f"numpy dtype state: bad itemsize {elsize!r:.40}")
    limit = hard_cap()
    if subarray is not None or names is not None:
        if base.kind != "V":
            raise UnsafePickleError(f"numpy dtype state: only void dtypes have fields or a subarray, not {obj!r}")
        if elsize > limit:
            raise UnsafePickleError(f"numpy dtype state: itemsize {elsize:,} is over {limit:,}")
    if subarray is not None:
        if not (isinstance(subarray, tuple) and len(subarray) == 2):
            raise UnsafePickleError("numpy dtype state: subarray must be (dtype, shape)")
        item = _sub_dtype(subarray[0])
        shape = _shape(subarray[1], "numpy dtype state")
        if nbytes(shape, item.itemsize) > limit:
            raise UnsafePickleError(f"numpy dtype state: subarray {shape} of {item} is over {limit:,} bytes")
        dt = np.dtype((item, shape))
    elif names is not None:
        dt = _structured(names, fields, elsize, bool(align))
    else:
        if elsize not in (-1, base.itemsize):
            raise UnsafePickleError(f"numpy dtype state: itemsize {elsize} does not match {obj!r}")
        dt = base
        metadata = state[8] if len(state) == 9 else None
        if base.kind in "Mm" and isinstance(metadata, tuple) and len(metadata) == 2 and metadata[1] is not None:
            unit, num = metadata[1][:2]
            unit = unit.decode("ascii", "replace") if isinstance(unit, bytes) else str(unit)
            if not (_DATETIME_UNIT.match(unit) and isinstance(num, int) and 0 < num < 1 << 31):
                raise UnsafePickleError(f"numpy dtype state: bad datetime unit {metadata[1]!r:.60}")
            dt = np.dtype(f"{base.kind.upper()}8[{num}{unit}]" if unit != "generic" else f"{base.kind.upper()}8")
        if endian in "<>" and dt.byteorder != "|":
            dt = dt.newbyteorder(endian)
    if dt.hasobject:
        raise UnsafePickleError(f"numpy object dtype {dt!r} is not allowed")
    return dt


class DtypeSpec:
    """What ``numpy.dtype(obj, align, copy)`` gives a pickle: a description, checked, whose
    ``__setstate__`` builds the real dtype (``.dtype``) from plain parts."""

    def __init__(self, obj: Any = "f8", align: Any = False, copy: Any = True, *rest: Any) -> None:
        if isinstance(obj, bytes):
            obj = obj.decode("ascii", "replace")
        if not isinstance(obj, str) or not _DTYPE_STR.match(obj) or rest:
            raise UnsafePickleError(
                f"numpy dtype {obj!r:.40} is not allowed (object dtypes and dtype expressions are refused)"
            )
        self.obj, self.align = obj, bool(align)
        self.dtype = build_dtype(obj, self.align, None)
        if self.dtype.itemsize > hard_cap():
            raise UnsafePickleError(f"numpy dtype {obj!r}: itemsize over the hard cap")
        _pending()

    def __setstate__(self, state: Any) -> None:
        self.dtype = build_dtype(self.obj, self.align, state)


# --------------------------------------------------------------------------- arrays
class NdarrayClass:
    """Stands for the class ``numpy.ndarray`` (only ever an argument of ``_reconstruct``);
    calling it, or ``NEWOBJ`` on it (not a type), is refused."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError("numpy.ndarray(...) may not be called by a pickle; arrays come from _reconstruct")

    def __reduce__(self) -> str:
        return "NDARRAY"


NDARRAY = NdarrayClass()


class ArraySpec:
    """What ``_reconstruct`` gives a pickle: an empty array of the asked shape, charged; its
    ``__setstate__`` checks shape, dtype and raw bytes and builds the real array (``.array``)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        charge(nbytes(shape, dtype.itemsize), f"numpy array {shape} of {dtype}")
        self.array = np.zeros(shape, dtype)
        _pending()

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise UnsafePickleError(
                f"numpy array state must be (version, shape, dtype, fortran, data), got {type(state).__name__}"
            )
        shape, dtype, fortran, raw = state
        shape = _shape(shape, "numpy array state")
        dtype = as_dtype(dtype, "numpy array state")
        if isinstance(raw, str):
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise UnsafePickleError(f"numpy array state: data must be bytes, got {type(raw).__name__}")
        size = nbytes(shape, dtype.itemsize)
        if dtype.itemsize and size != len(raw) or not dtype.itemsize and len(raw):
            raise UnsafePickleError(
                f"numpy array state: {len(raw):,} data bytes for shape {shape} of {dtype} ({size:,} bytes)"
            )
        charge(size, f"numpy array {shape} of {dtype}")
        if not len(raw):
            self.array = np.zeros(shape, dtype)
            return
        # a byte copy (not ndarray.copy, which skips a structured dtype's padding), owned and writable
        flat = np.frombuffer(bytearray(raw), dtype=dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C")


def reconstruct(cls: Any, shape: Any, dtype_code: Any) -> ArraySpec:
    """``numpy.core.multiarray._reconstruct`` (plain ``ndarray`` only)."""
    if cls is not NDARRAY and cls is not np.ndarray:
        raise UnsafePickleError(f"numpy _reconstruct of {cls!r:.60} is not allowed")
    if isinstance(dtype_code, bytes):
        dtype_code = dtype_code.decode("ascii", "replace")
    code = DtypeSpec(dtype_code).dtype if isinstance(dtype_code, str) else as_dtype(dtype_code)
    return ArraySpec(_shape(shape, "numpy _reconstruct"), code)


def scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar`` for non-object dtypes."""
    dt = as_dtype(dtype, "numpy scalar")
    if not isinstance(data, (bytes, bytearray)) or len(data) != dt.itemsize:
        raise UnsafePickleError(f"numpy scalar payload must be {dt.itemsize} bytes")
    return np.frombuffer(bytes(data), dtype=dt, count=1)[0]


def frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` (protocol 5 arrays): the buffer must be bytes-like."""
    if not isinstance(buf, (bytes, bytearray, memoryview, pickle.PickleBuffer)):
        raise UnsafePickleError(f"numpy _frombuffer needs a bytes buffer, got {type(buf).__name__}")
    dt = as_dtype(dtype, "numpy _frombuffer")
    shape = _shape(shape, "numpy _frombuffer")
    raw = memoryview(buf).cast("B")
    if nbytes(shape, dt.itemsize) != raw.nbytes and dt.itemsize:
        raise UnsafePickleError(f"numpy _frombuffer: {raw.nbytes:,} bytes for shape {shape} of {dt}")
    charge(raw.nbytes, f"numpy array {shape} of {dt}")
    if not raw.nbytes:
        return np.zeros(shape, dt)
    return np.frombuffer(bytearray(raw), dtype=dt).reshape(shape, order="F" if order == "F" else "C")


def _charge_buffer(kind: str, args: tuple) -> None:
    if args and isinstance(args[0], (int, np.integer)) and not isinstance(args[0], bool):
        charge(int(args[0]), f"{kind}({int(args[0])})")
    elif args and isinstance(args[0], (list, tuple, bytes, bytearray, str)):
        charge(len(args[0]), f"{kind} of a sequence")
    elif args:
        raise UnsafePickleError(f"{kind} of {type(args[0]).__name__} is not allowed")


def checked_bytearray(*args: Any) -> bytearray:
    """``bytearray``, with ``bytearray(n)`` charged against the budget."""
    _charge_buffer("bytearray", args)
    return bytearray(*args)


def checked_bytes(*args: Any) -> bytes:
    """``bytes`` (protocol 0/1 pickles write ``bytes()`` for b""), ``bytes(n)`` charged."""
    _charge_buffer("bytes", args)
    return bytes(*args)


# --------------------------------------------------------------------------- finalize
def finalize(obj: Any, what: str) -> Any:
    """``obj`` with every ``DtypeSpec``/``ArraySpec`` replaced by the dtype/array it built
    (lists, dicts and objects' ``__dict__`` in place; tuples and sets rebuilt)."""
    memo: dict[int, Any] = {}

    def walk(x: Any, depth: int) -> Any:
        if isinstance(x, ArraySpec):
            return x.array
        if isinstance(x, DtypeSpec):
            return x.dtype
        if x is NDARRAY:
            return np.ndarray
        if isinstance(x, (str, bytes, bytearray, int, float, complex, np.ndarray, np.generic)) or x is None:
            return x
        key = id(x)
        if key in memo:
            return memo[key]
        if depth > MAX_DEPTH:
            raise UnsafePickleError(f"{what}: pickled value is nested deeper than {MAX_DEPTH} levels")
        if isinstance(x, list):
            memo[key] = x
            x[:] = [walk(v, depth + 1) for v in x]
        elif isinstance(x, dict):
            memo[key] = x
            items = [(walk(k, depth + 1), walk(v, depth + 1)) for k, v in x.items()]
            x.clear()
            x.update(items)
        elif isinstance(x, (tuple, set, frozenset)):
            memo[key] = type(x)(walk(v, depth + 1) for v in x)
        elif isinstance(getattr(x, "__dict__", None), dict):
            memo[key] = x
            walk(x.__dict__, depth + 1)
        else:
            memo[key] = x
        return memo[key]

    return walk(obj, 0)


NUMPY_CALLABLES: dict[str, Callable[..., Any]] = {
    "_reconstruct": reconstruct,
    "scalar": scalar,
    "_frombuffer": frombuffer,
}
