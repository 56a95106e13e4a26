"""Unpickle torch tensors and torch_geometric ``Data`` objects as numpy, without torch or PyG.

Why: OC20/OC22/ODAC LMDBs and the matsciml dev sets store ``pickle.dumps`` of PyG ``Data`` or of
dicts of torch tensors. We must not run arbitrary pickle code, and we do not want torch in the
data pipeline. A pickled tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, ...)`` whose storage is ``torch.storage._load_from_bytes(payload)``; ``payload`` is a
*legacy* ``torch.save`` stream (torch/serialization.py ``_legacy_save``): four pickles (magic
number, protocol version, sys info, the storage object given by a persistent id
``('storage', <Type>Storage, key, location, numel, view_metadata)``), a pickled list of storage
keys, then for each key an int64 element count and the raw little-endian bytes. Each piece is
read with ``safeio.RestrictedUnpickler``; PyG classes become ``PickledObject`` stand-ins holding
their state. Every array built here is charged to the load's allocation budget
(``_pickle_guard.charge``): a tensor whose size/stride (stride 0 repeats one element) asks for
more than the pickle's length allows is refused before it is copied.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

from omni_data._pickle_guard import charge, default_limits, nbytes
from omni_data.safeio import BASIC_GLOBALS, NUMPY_GLOBALS, RestrictedUnpickler, UnsafePickleError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "<c8",
    "ComplexDoubleStorage": "<c16",
    "UntypedStorage": "u1",
}
_PYG_CLASSES = (
    ("torch_geometric.data.data", "Data"),
    ("torch_geometric.data.data", "DataEdgeAttr"),
    ("torch_geometric.data.data", "DataTensorAttr"),
    ("torch_geometric.data.storage", "GlobalStorage"),
    ("torch_geometric.data.storage", "BaseStorage"),
)


class StorageType:
    """Stand-in for ``torch.<X>Storage`` classes named in a legacy stream's persistent ids."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def dtype(self) -> str:
        return _STORAGE_DTYPES[self.name]


class PickledObject:
    """Stand-in for an allow-listed class (PyG ``Data`` and its storages): keeps the pickled state."""

    _module = ""
    _name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = dict(kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            merged: dict[str, Any] = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            state = merged
        if not isinstance(state, dict):
            raise UnsafePickleError(f"{self._module}.{self._name}: unexpected pickled state {type(state).__name__}")
        self.__dict__.setdefault("state", {}).update(state)

    def mapping(self) -> dict[str, Any]:
        """The attribute mapping of a PyG ``Data``: PyG>=2 keeps it in ``_store._mapping``, PyG 1
        in the instance ``__dict__`` (unset attributes are ``None`` there and are dropped)."""
        state = self.__dict__.get("state", {})
        for store_key in ("_store", "_global_store"):
            store = state.get(store_key)
            if isinstance(store, PickledObject):
                inner = store.__dict__.get("state", {}).get("_mapping", {})
                return {k: v for k, v in dict(inner).items() if v is not None}
        return {k: v for k, v in state.items() if v is not None and not k.startswith("_")}


def _stand_in(module: str, name: str) -> type[PickledObject]:
    return type(name, (PickledObject,), {"_module": module, "_name": name, "__module__": __name__})


def _bfloat16_to_float32(raw: bytes) -> np.ndarray:
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32)


def load_legacy_storage(payload: bytes, what: str) -> np.ndarray:
    """Decode one legacy ``torch.save`` stream holding a single storage into a 1-D numpy array."""
    if payload[:2] == b"PK":
        raise UnsafePickleError(f"{what}: zip-format torch storage payloads are not supported")
    fh = io.BytesIO(payload)
    plain = {**BASIC_GLOBALS}
    magic = RestrictedUnpickler(fh, plain, what).load()
    if magic != LEGACY_MAGIC:
        raise UnsafePickleError(f"{what}: not a torch legacy stream (magic {magic!r})")
    RestrictedUnpickler(fh, plain, what).load()  # protocol version
    sys_info = RestrictedUnpickler(fh, plain, what).load()
    little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    storage_classes = {("torch", n): StorageType(n) for n in _STORAGE_DTYPES}
    wanted: dict[str, tuple[StorageType, int]] = {}

    def persistent(pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], StorageType)):
            raise UnsafePickleError(f"{what}: unexpected persistent id {pid!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise UnsafePickleError(f"{what}: storage views are not supported")
        wanted[str(pid[2])] = (pid[1], int(pid[4]))
        return str(pid[2])

    key = RestrictedUnpickler(fh, storage_classes, what, persistent).load()
    keys = RestrictedUnpickler(fh, plain, what).load()
    arrays: dict[str, np.ndarray] = {}
    for k in keys:
        stype, numel = wanted[str(k)]
        (count,) = struct.unpack("<q", fh.read(8))
        if count != numel and stype.name != "UntypedStorage":
            raise UnsafePickleError(f"{what}: storage {k} has {count} elements, header says {numel}")
        if count < 0:
            raise UnsafePickleError(f"{what}: storage {k} has a negative element count {count}")
        if stype.dtype == "bfloat16":
            raw = fh.read(2 * count)
            if len(raw) != 2 * count:
                raise UnsafePickleError(f"{what}: storage {k} is truncated")
            charge(4 * count, f"bfloat16 storage of {count} elements")
            arrays[str(k)] = _bfloat16_to_float32(raw if little else bytes(np.frombuffer(raw, "<u2").byteswap()))
            continue
        dt = np.dtype(stype.dtype)
        raw = fh.read(dt.itemsize * count)
        if len(raw) != dt.itemsize * count:
            raise UnsafePickleError(f"{what}: storage {k} is truncated")
        charge(len(raw), f"{stype.name} of {count} elements")
        arr = np.frombuffer(raw, dtype=dt if little else dt.newbyteorder(">"))
        arrays[str(k)] = arr.astype(dt.newbyteorder("="), copy=True)
    return arrays[key]


def rebuild_tensor(storage: np.ndarray, offset: int, size: Any, stride: Any, *_rest: Any) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2`` as numpy: a bounds-checked strided copy of ``storage``."""
    if not isinstance(storage, np.ndarray):
        raise UnsafePickleError(f"tensor storage must be an array, got {type(storage).__name__}")
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
        raise UnsafePickleError(f"bad tensor geometry size={size} stride={stride} offset={offset}")
    charge(nbytes(size, storage.dtype.itemsize), f"tensor of size {size} ({storage.dtype})")
    if 0 in size:
        return np.empty(size, dtype=storage.dtype)
    last = int(offset) + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise UnsafePickleError(f"tensor view reaches element {last} of a storage of {storage.size}")
    base = storage[int(offset) :]
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(base, shape=size, strides=tuple(s * item for s in stride), writeable=False)
    return np.array(view, copy=True)


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    """``copyreg._reconstructor`` (protocol < 2 object pickles), for stand-in classes only."""
    if not (isinstance(cls, type) and issubclass(cls, PickledObject)):
        raise UnsafePickleError(f"copyreg._reconstructor for {cls!r} is not allowed")
    return cls.__new__(cls)


def tensor_globals(what: str) -> dict[tuple[str, str], Any]:
    """The allow-list for records holding torch tensors, numpy arrays and PyG ``Data``."""
    table: dict[tuple[str, str], Any] = {**BASIC_GLOBALS, **NUMPY_GLOBALS}
    table[("torch._utils", "_rebuild_tensor_v2")] = rebuild_tensor
    table[("torch._utils", "_rebuild_tensor")] = rebuild_tensor
    table[("torch.storage", "_load_from_bytes")] = lambda payload: load_legacy_storage(payload, what)
    table[("copyreg", "_reconstructor")] = _reconstructor
    table[("builtins", "object")] = object
    for module, name in _PYG_CLASSES:
        table[(module, name)] = _stand_in(module, name)
    return table


def to_plain(obj: Any) -> Any:
    """A PyG ``Data`` stand-in becomes its attribute dict; everything else is returned as is."""
    if isinstance(obj, PickledObject):
        return obj.mapping()
    return obj


def loads_record(data: bytes, what: str) -> Any:
    """Unpickle one LMDB value (dict or PyG ``Data``) safely, tensors as numpy arrays."""
    limits = default_limits()  # a bad $OMNI_PICKLE_MAX_BYTES is a ValueError, not a bad record
    try:
        obj = RestrictedUnpickler(
            io.BytesIO(data), tensor_globals(what), what, limits=limits, source_len=len(data)
        ).load()
    except UnsafePickleError as exc:
        msg = str(exc)
        raise UnsafePickleError(msg if msg.startswith(what) else f"{what}: {msg}") from None
    except Exception as exc:
        raise UnsafePickleError(f"{what}: cannot unpickle ({type(exc).__name__}: {exc})") from exc
    return to_plain(obj)
