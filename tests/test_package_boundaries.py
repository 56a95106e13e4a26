"""omni_data never imports omni_model: data flows to the model, never back. Only the face (the
CLIs under omni_data/cli and the demo) may know both (../shared/ARCHITECTURE.md)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "omni_data"
FACE = ("cli", "demo")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "require") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def test_omni_data_library_never_imports_omni_model() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in FACE:
            continue
        bad = sorted(n for n in _imports(path) if n == "omni_model" or n.startswith("omni_model."))
        if bad:
            offenders.append(f"omni_data/{rel.as_posix()}: {', '.join(bad)}")
    assert not offenders, f"omni_data library modules import omni_model: {offenders}"
