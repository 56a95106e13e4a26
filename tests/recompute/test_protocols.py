"""Protocol YAML: PARENT inheritance, validation, unknown keys named with their file."""

from __future__ import annotations

from pathlib import Path

import pytest

from omni_data.recompute.protocols import ProtocolError, list_protocols, load_protocol


def test_shipped_protocols_load() -> None:
    names = set(list_protocols())
    assert {"mp-pbe-static", "r2scan-static", "gfn2-xtb", "gfn1-xtb", "pyscf-pbe-def2svp"} <= names
    mp = load_protocol("mp-pbe-static")
    assert mp.engine == "vasp" and mp.vasp is not None
    assert mp.vasp.input_set == "MPStaticSet"
    assert mp.vasp.set_kwargs == {"reciprocal_density": 100}
    assert mp.task == "mpa"
    # inherited from vasp-base
    assert mp.molecule.policy == "box" and mp.molecule.vacuum == 10.0 and mp.molecule.cubic
    assert mp.molecule.incar["ISMEAR"] == 0 and mp.molecule.incar["KSPACING"] is None
    scan = load_protocol("r2scan-static")
    assert scan.vasp.input_set == "MatPESStaticSet" and scan.vasp.set_kwargs == {"xc_functional": "R2SCAN"}


def test_parent_override_keeps_parent_options() -> None:
    gfn1 = load_protocol("gfn1-xtb")
    gfn2 = load_protocol("gfn2-xtb")
    assert gfn1.method.name == "GFN1-xTB" and gfn2.method.name == "GFN2-xTB"
    assert gfn1.method.options == gfn2.method.options  # options come from the PARENT
    assert gfn1.engine == "tblite"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine: tblite\nmethod:\n  name: GFN2-xTB\n  optoins: {}\n")
    with pytest.raises(ProtocolError) as err:
        load_protocol(bad)
    assert str(bad) in str(err.value) and "method.optoins" in str(err.value)
    top = tmp_path / "top.yaml"
    top.write_text("engine: vasp\nvasp_settings: {}\n")
    with pytest.raises(ProtocolError, match="vasp_settings"):
        load_protocol(top)


def test_bad_values_are_errors(tmp_path: Path) -> None:
    cases = {
        "engine: gaussian\n": "engine",
        "engine: vasp\nvasp:\n  input_set: os.system\n": "vasp.input_set",
        "engine: pyscf\nmethod: {}\n": "method.name",
        "engine: tblite\nmethod: {name: x}\nmolecule: {vacuum: -1}\n": "molecule.vacuum",
        "engine: tblite\nmethod: {name: x}\nmolecule: {charged: maybe}\n": "molecule.charged",
    }
    for i, (text, key) in enumerate(cases.items()):
        path = tmp_path / f"p{i}.yaml"
        path.write_text(text)
        with pytest.raises(ProtocolError, match=key.replace(".", r"\.")):
            load_protocol(path)


def test_parent_chain_and_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("PARENT: b\nengine: tblite\nmethod: {name: A}\n")
    (tmp_path / "b.yaml").write_text("PARENT: a\nengine: tblite\nmethod: {name: B, options: {x: 1}}\n")
    with pytest.raises(ProtocolError, match="cycle"):
        load_protocol(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("PARENT: d\nmethod: {name: C}\n")
    (tmp_path / "d.yaml").write_text("engine: tblite\nmethod: {name: D, options: {x: 1, y: 2}}\n")
    c = load_protocol(tmp_path / "c.yaml")
    assert c.method.name == "C" and c.method.options == {"x": 1, "y": 2} and c.name == "c"
    with pytest.raises(ProtocolError, match="no such protocol"):
        load_protocol("does-not-exist")
