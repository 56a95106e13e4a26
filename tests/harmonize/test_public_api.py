"""``__all__`` of the harmonize, report and their CLI modules: it resolves and lists every public
function and class the module defines (issue 20, item 10)."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "omni_data.harmonize.references",
    "omni_data.harmonize.reference_fit",
    "omni_data.harmonize.splits",
    "omni_data.harmonize.dedup",
    "omni_data.harmonize.pairs",
    "omni_data.harmonize.grouping",
    "omni_data.cli.references",
    "omni_data.cli.split",
    "omni_data.cli.dedup",
    "omni_data.cli.pairs",
    "omni_data.report.html",
    "omni_data.report.plots",
    "omni_data.report.periodic_table",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_the_public_api(name):
    module = importlib.import_module(name)
    assert [n for n in module.__all__ if not hasattr(module, n)] == []
    defined = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__ == module.__name__
    }
    assert defined - set(module.__all__) == set()
