"""Declared dependencies match the imports (issue 20, item 7).

Every third-party top-level import in ``omni_data`` and ``omni_model`` (read with ``ast``, nothing
is imported) must be a base dependency in pyproject.toml, or an optional one: declared in an extra,
imported lazily inside a function in ``omni_data`` (so ``import omni_data.x`` works without it),
and named for that module in the extras table of docs/packaging.md. The other way round, every
base dependency is imported by some package module, every [test] dependency by the tests and every
[bench] dependency by the benchmarks (a short list of tools that are used but never imported aside).
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI ([test] declares it there)
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("omni_data", "omni_model")
LOCAL_TOPS = {"omni_data", "omni_model", "tests", "conftest", "benchmarks", "pipelines"}

# Import name -> distribution name, where they differ (the rest: lower case, '_' -> '-').
DIST_OF_IMPORT = {
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "distributed": "dask[distributed]",
}
# Used without being imported: pytest plugins, build tools, runtime deps of a benchmarked package.
NOT_IMPORTED = {
    "test": {"pytest-timeout", "setuptools"},  # a pytest plugin; tests/test_packaging.py builds the wheel
    "bench": {"matscipy", "braceexpand", "xxhash"},  # sevenn's own imports (benchmarks/train.py)
}


@dataclass(frozen=True)
class Use:
    """One third-party import: the module that makes it, the top-level name, and whether it runs
    at import time of that module (module level, including ``try:`` blocks) or only in a function."""

    module: str
    name: str
    at_import: bool


def dist_of(import_name: str) -> str:
    """The distribution that provides ``import_name`` (canonical, with ``[extra]`` where needed)."""
    dist = DIST_OF_IMPORT.get(import_name, import_name.replace("_", "-"))
    base, _, extra = dist.partition("[")
    return canonicalize_name(base) + (f"[{extra}" if extra else "")


def declared() -> dict[str, set[str]]:
    """{"": base deps, extra: its deps} from pyproject.toml, as canonical names; a requirement
    with extras (``dask[distributed]``) also declares ``dask[distributed]``; ``omni[a,b]`` expands."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    out: dict[str, set[str]] = {}

    def names(group: str) -> set[str]:
        found: set[str] = set()
        for spec in groups[group]:
            req = Requirement(spec)
            if canonicalize_name(req.name) == canonicalize_name(project["name"]):
                for extra in req.extras:
                    found |= names(extra)
                continue
            found.add(canonicalize_name(req.name))
            found |= {f"{canonicalize_name(req.name)}[{e}]" for e in req.extras}
        return found

    for group in groups:
        out[group] = names(group)
    return out


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


DYNAMIC_IMPORTERS = {"import_module", "importorskip", "optional"}  # optional: the fixture in tests/conftest.py


def _dynamic_import(call: ast.Call) -> str:
    """The module named by ``import_module("x")``, ``pytest.importorskip("x")`` or ``optional("x", ...)``."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name in DYNAMIC_IMPORTERS and call.args and isinstance(call.args[0], ast.Constant):
        return str(call.args[0].value) if isinstance(call.args[0].value, str) else ""
    return ""


def imports_of(path: Path) -> list[Use]:
    """The third-party imports of one file (standard library and local packages left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    uses: list[Use] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            elif isinstance(child, ast.Call) and _dynamic_import(child):
                names = [_dynamic_import(child)]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in LOCAL_TOPS:
                    uses.append(Use(_module_name(path), top, not in_function))
            visit(child, inner)

    visit(tree, False)
    return uses


def package_imports() -> list[Use]:
    """Every third-party import of every module under omni_data and omni_model."""
    return [u for pkg in PACKAGES for f in sorted((REPO / pkg).rglob("*.py")) for u in imports_of(f)]


def extras_table() -> dict[str, str]:
    """{extra: its row} from the table in docs/packaging.md (rows like ``| `model` | ... |``)."""
    rows: dict[str, str] = {}
    for line in (REPO / "docs" / "packaging.md").read_text().splitlines():
        m = re.match(r"\|\s*`([a-z]+)`\s*\|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def _documents(row: str, module: str) -> bool:
    """Whether a docs row names ``module`` or one of its parent packages (as ``a.b`` in backticks)."""
    parts = module.split(".")
    return any(f"`{'.'.join(parts[:i])}`" in row for i in range(1, len(parts) + 1))


def test_import_parser_sees_real_imports() -> None:
    """The parser itself: module-level, try-block and function-level imports, stdlib left out."""
    uses = imports_of(REPO / "omni_data" / "readers" / "_tfrecord.py")
    assert Use("omni_data.readers._tfrecord", "crc32c", True) in uses
    assert Use("omni_data.readers._tfrecord", "numpy", True) in uses
    assert not [u for u in uses if u.name in ("struct", "zlib", "omni_data")]
    lazy = imports_of(REPO / "omni_data" / "select" / "fps_torch.py")
    assert Use("omni_data.select.fps_torch", "torch", False) in lazy
    assert dist_of("yaml") == "pyyaml" and dist_of("dask_jobqueue") == "dask-jobqueue"
    assert dist_of("distributed") == "dask[distributed]"


def test_every_package_import_is_declared() -> None:
    deps = declared()
    rows = extras_table()
    problems = []
    for use in package_imports():
        dist = dist_of(use.name)
        if dist in deps[""]:
            continue
        extras = sorted(e for e, names in deps.items() if e and e != "all" and dist in names)
        if not extras:
            problems.append(f"{use.module} imports {use.name}: {dist} is not declared in pyproject.toml")
        elif use.at_import and use.module.startswith("omni_data"):
            problems.append(
                f"{use.module} imports {use.name} (extra {extras}) at module level; import it "
                "inside the function that needs it, or make it a base dependency"
            )
        elif not any(_documents(rows.get(e, ""), use.module) for e in extras):
            problems.append(
                f"{use.module} imports {use.name} (extra {extras}) but docs/packaging.md's row "
                f"for {extras} does not name `{use.module}` or a parent package"
            )
    assert not problems, "\n".join(problems)


def test_every_base_dependency_is_imported() -> None:
    """scikit-learn, ijson and ase-db-backends were declared without a package module using them."""
    used = {dist_of(u.name) for u in package_imports()}
    unused = sorted(d for d in declared()[""] if d not in used)
    assert not unused, f"base dependencies no omni_data/omni_model module imports: {unused}"


def _imports_under(folder: str) -> set[str]:
    return {dist_of(u.name) for f in sorted((REPO / folder).rglob("*.py")) for u in imports_of(f)}


def test_test_and_bench_extras_are_used() -> None:
    deps = declared()
    for extra, folder in (("test", "tests"), ("bench", "benchmarks")):
        unused = sorted(deps[extra] - _imports_under(folder) - NOT_IMPORTED[extra])
        assert not unused, f"[{extra}] declares what nothing under {folder}/ imports: {unused}"


def test_tests_and_benchmarks_imports_are_declared() -> None:
    """What the tests and benchmarks import is in the extras CI installs ([all]) or [bench]."""
    deps = declared()
    for folder, groups in (("tests", ("", "all", "soap")), ("benchmarks", ("", "all", "bench", "soap"))):
        have = set().union(*(deps[g] for g in groups))
        missing = sorted(d for d in _imports_under(folder) if d not in have)
        assert not missing, f"{folder}/ imports undeclared distributions: {missing}"
