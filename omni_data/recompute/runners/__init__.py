"""The local runners table: engine name -> module with ``run(record, method)`` and ``versions()``.

Modules are imported on use, so ``import omni_data`` never loads tblite or PySCF.
"""
from __future__ import annotations

import importlib
from types import ModuleType

RUNNERS: dict[str, str] = {
    "tblite": "omni_data.recompute.runners.xtb",
    "pyscf": "omni_data.recompute.runners.pyscf",
}

# --method values of `omni-data run-local` (each is a protocol in manifests/protocols/)
LOCAL_METHODS: tuple[str, ...] = ("gfn2-xtb", "gfn1-xtb", "pyscf-pbe-def2svp")


def get_runner(engine: str) -> ModuleType:
    """Import the runner module for ``engine``; ValueError naming the known engines otherwise."""
    try:
        return importlib.import_module(RUNNERS[engine])
    except KeyError:
        raise ValueError(f"no local runner for engine {engine!r}; known: {', '.join(sorted(RUNNERS))}") from None
