"""The local runners table: engine name -> module with ``run(record, method)`` and ``versions()``.

Modules are imported on use, so ``import omni_data`` never loads tblite or PySCF. The methods
``omni-data run-local --method`` offers are derived, not listed: every protocol file
(``manifests/protocols/*.yaml``, or ``$OMNI_PROTOCOLS``) whose engine has a row here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["local_methods", "get_runner"]

RUNNERS: dict[str, str] = {
    "tblite": "omni_data.recompute.runners.xtb",
    "pyscf": "omni_data.recompute.runners.pyscf",
}


def local_methods() -> dict[str, str]:
    """Protocol name -> engine for every protocol a local runner can run (``run-local --method``)."""
    from omni_data.recompute.protocols import list_protocols, load_raw

    found = {name: str(load_raw(name)[0].get("engine")) for name in list_protocols()}
    return {name: engine for name, engine in found.items() if engine in RUNNERS}


def get_runner(engine: str) -> ModuleType:
    """Import the runner module for ``engine``; ValueError naming the known engines otherwise."""
    try:
        return importlib.import_module(RUNNERS[engine])
    except KeyError:
        raise ValueError(f"no local runner for engine {engine!r}; known: {', '.join(sorted(RUNNERS))}") from None
