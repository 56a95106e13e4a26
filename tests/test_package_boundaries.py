"""omni_data never imports omni_model: data flows to the model, never back. Only the face (the
CLIs under omni_data/cli) may know both; the demo, which needs both, is ``omni_model.demo``
(../shared/ARCHITECTURE.md, issue 20 item 4). Every omni_data library module imports with torch
unavailable."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "omni_data"
FACE = ("cli",)
BLOCKED = ("torch", "e3nn", "omni_model")
"""Unimportable in the subprocess that imports every omni_data library module."""


def _library_files() -> list[Path]:
    """Every omni_data module outside the face (omni_data/cli)."""
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] not in FACE]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are module, class or function docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _names_of_omni_model(path: Path) -> set[str]:
    """Imports of omni_model, and string constants naming it (``import_module("omni_model.x")``,
    a lazily imported name); docstrings, which may mention it, are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            names.add(node.value.strip())
    return {n for n in names if n == "omni_model" or n.startswith("omni_model.")}


def test_omni_data_library_never_names_omni_model() -> None:
    offenders = [
        f"{p.relative_to(REPO).as_posix()}: {', '.join(sorted(bad))}"
        for p in _library_files()
        if (bad := _names_of_omni_model(p))
    ]
    assert not offenders, f"omni_data library modules import or name omni_model: {offenders}"


def test_the_check_sees_imports_and_lazy_names(tmp_path) -> None:
    """The scanner itself: module-level, lazy and string-named imports count; a docstring does not."""
    src = tmp_path / "m.py"
    src.write_text(
        textwrap.dedent('''\
        """Uses omni_model.scorer (a docstring: allowed)."""
        import importlib

        def f():
            from omni_model.calculator import OmniCalculator
            return importlib.import_module("omni_model.scorer")
        ''')
    )
    assert _names_of_omni_model(src) == {"omni_model.calculator", "omni_model.scorer"}


_IMPORT_ALL = """
import importlib, importlib.abc, json, sys, traceback

BLOCKED = {blocked!r}
attempts = []

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
failures = {{}}
tried = {{}}
for module in {modules!r}:
    before = len(attempts)
    try:
        importlib.import_module(module)
    except BaseException as exc:
        failures[module] = f"{{type(exc).__name__}}: {{exc}}"
    if len(attempts) > before:
        tried[module] = sorted(set(attempts[before:]))
print(json.dumps({{"failures": failures, "tried": tried,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}}))
"""


def test_every_omni_data_module_imports_without_torch() -> None:
    modules = [_module_name(p) for p in _library_files()]
    assert "omni_data.select.strategies" in modules and "omni_data.store" in modules
    assert not [m for m in modules if m.startswith("omni_data.cli")]
    code = _IMPORT_ALL.format(blocked=BLOCKED, modules=modules)
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failures"] == {}, f"omni_data modules that fail to import without torch: {result['failures']}"
    assert result["tried"] == {}, f"omni_data modules that try to import {BLOCKED} at import time: {result['tried']}"
    assert result["loaded"] == []


def test_the_demo_lives_with_the_model_and_the_cli_is_its_face() -> None:
    """omni_data/demo is gone; ``omni-data demo`` imports omni_model.demo only when it runs."""
    assert not (PACKAGE / "demo").exists()
    assert (REPO / "omni_model" / "demo" / "run.py").is_file()
    tree = ast.parse((PACKAGE / "cli" / "demo.py").read_text(encoding="utf-8"))
    top_level = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)} | {
        a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names
    }
    assert not {m for m in top_level if m and m.startswith("omni_model")}
    assert "omni_model.demo.run" in _names_of_omni_model(PACKAGE / "cli" / "demo.py")
