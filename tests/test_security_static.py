"""Source-level guards: YAML only through safe_load, pickle only through omni_data.safeio, torch
checkpoints only with weights_only=True, and no shell=True subprocess calls."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for pkg in ("omni_data", "omni_model") for p in (ROOT / pkg).rglob("*.py"))


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield node, owner, name


def test_sources_found():
    assert len(SOURCES) > 50


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unsafe_deserialisation_or_shell(path):
    for node, owner, name in _calls(path):
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        if owner == "yaml":
            assert name not in {"load", "load_all", "unsafe_load", "full_load"}, f"{where}: use yaml.safe_load"
        if owner in {"pickle", "cPickle", "dill"} and name in {"load", "loads", "Unpickler"}:
            assert path.name == "safeio.py", f"{where}: unpickle only through omni_data.safeio.restricted_loads"
        if owner == "torch" and name == "load":
            kw = {k.arg: k.value for k in node.keywords}
            ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
            assert ok, f"{where}: torch.load must pass weights_only=True"
        if name in {"run", "Popen", "call", "check_call", "check_output"} and owner == "subprocess":
            for k in node.keywords:
                assert not (k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value), (
                    f"{where}: shell=True"
                )
        if owner == "os" and name == "system":
            raise AssertionError(f"{where}: os.system")


def test_pickle_allow_list_is_the_reviewed_one():
    """Every global a pickle may name was reviewed for what it can allocate or mutate: nothing on
    the list repeats a sequence, and no real numpy class or dtype is handed to a pickle (numpy's
    ``dtype.__setstate__`` trusts its state), so a new entry must come with its own review."""
    import numpy as np

    from omni_data.readers._pickle_tensors import tensor_globals
    from omni_data.safeio import BASIC_GLOBALS, NUMPY_GLOBALS

    reviewed = {
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "bytearray"),
        ("builtins", "bytes"),
        ("builtins", "slice"),
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *(
            (f"{core}.{mod}", name)
            for core in ("numpy.core", "numpy._core")
            for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
        ),
    }
    assert set(BASIC_GLOBALS) | set(NUMPY_GLOBALS) == reviewed
    table = tensor_globals("w")
    assert not any(v in (np.ndarray, np.dtype, bytes, bytearray, list, tuple) for v in table.values())
    assert set(table) - reviewed == {
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch.storage", "_load_from_bytes"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
        ("torch_geometric.data.data", "Data"),
        ("torch_geometric.data.data", "DataEdgeAttr"),
        ("torch_geometric.data.data", "DataTensorAttr"),
        ("torch_geometric.data.storage", "GlobalStorage"),
        ("torch_geometric.data.storage", "BaseStorage"),
    }
