"""docs/reliability.md names a test for every fault and attack: each named test must exist.

A row may name ``tests/path.py::test_name`` or, after such a reference in the same cell,
``::test_name`` for another test of the same file. Parametrized ids (``[...]``) are ignored."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _references(text: str) -> list[tuple[str, str | None]]:
    refs: list[tuple[str, str | None]] = []
    for line in text.splitlines():
        current: str | None = None
        for cell in line.split("|"):
            for token in re.findall(r"`([^`]+)`", cell):
                if token.startswith("tests/"):
                    file, _, name = token.partition("::")
                    current = file
                    refs.append((file, name.split("[")[0] or None))
                elif token.startswith("::") and current:
                    refs.append((current, token[2:].split("[")[0]))
    return refs


def test_every_test_named_in_reliability_doc_exists() -> None:
    refs = _references((REPO / "docs" / "reliability.md").read_text())
    assert len(refs) > 50
    missing = []
    for file, name in refs:
        path = REPO / file
        if file.endswith("/") or "..." in file:  # a folder, or "tests/hostile/...::name" shorthand
            continue
        if not path.exists():
            missing.append(file)
        elif path.suffix == ".py" and name and name not in _test_names(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
