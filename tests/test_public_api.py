"""Every public module of omni_data and omni_model says what its API is: ``__all__`` lists every
public function and class the module defines, and names nothing that is not there (issue 20,
item 10). Read from the source (ast), so the check needs neither torch nor Dask."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _modules() -> list[Path]:
    out = []
    for root in ("omni_data", "omni_model"):
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO)
            if any(p.startswith("_") and p != "__init__.py" for p in rel.parts) or path.name == "__main__.py":
                continue
            out.append(path)
    return out


def _all_of(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return None


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node in tree.body:
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_every_public_module_lists_its_api() -> None:
    missing, stale = [], []
    modules = _modules()
    assert len(modules) > 100
    for path in modules:
        tree = ast.parse(path.read_text())
        defined = {
            n.name
            for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith("_")
        }
        listed = _all_of(tree)
        rel = path.relative_to(REPO).as_posix()
        if listed is None:
            if defined:
                missing.append(f"{rel}: no __all__ ({', '.join(sorted(defined))})")
            continue
        if defined - set(listed):
            missing.append(f"{rel}: __all__ lacks {', '.join(sorted(defined - set(listed)))}")
        unknown = set(listed) - _top_level_names(tree)
        if unknown:
            stale.append(f"{rel}: __all__ names {', '.join(sorted(unknown))}, which the module does not define")
    assert not missing, "\n".join(missing)
    assert not stale, "\n".join(stale)
