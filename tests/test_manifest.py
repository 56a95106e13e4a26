"""Manifests: all fifteen databases validate; bad manifests fail naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from omni_data.manifest import (
    ManifestError,
    list_manifests,
    load_manifest,
    parse_manifest,
)
from omni_data.schema import Record
from omni_data.units import KBAR_EVA3

FIFTEEN = {
    "mptrj": "mpa",
    "salex": "mpa",
    "omat24": "omat24",
    "matpes_pbe": "matpes_pbe",
    "matpes_r2scan": "matpes_r2scan",
    "mp_aloe": "matpes_r2scan",
    "mp_r2scan": "mp_r2scan",
    "oc20": "oc20",
    "oc22": "oc22",
    "odac23": "odac23",
    "omol25": "omol25_low",
    "spice": "spice",
    "qcml": "qcml",
    "mad": "pet_mad",
    "bridge": "bridge",
}


def test_all_fifteen_manifests_validate_with_their_sevennet_task():
    assert set(list_manifests()) == set(FIFTEEN)
    for name, task in FIFTEEN.items():
        m = load_manifest(name)
        assert m.task == task, name
        assert m.level_of_theory["functional"] and m.licence and m.citation
        assert m.group_key


def test_omat_alias_and_omol25_spin_rules():
    assert load_manifest("omat").name == "omat24"
    m = load_manifest("omol25")
    assert m.tasks == ("omol25_low", "omol25_high")
    rec = Record(numbers=np.array([8]), positions=np.zeros((1, 3)), id="omol25:1", dataset="omol25", task="omol25_low")
    for spin, task in [(1, "omol25_low"), (2, "omol25_low"), (3, "omol25_high"), (5, "omol25_high")]:
        rec.spin = spin
        assert m.assign_task(rec).task == task


def test_mptrj_manifest_and_reader_give_ase_stress(tmp_path):
    """10 kBar compressive (MPtrj/VASP sign, positive) must come out as -0.0062415 eV/Å^3."""
    from pymatgen.core import Lattice, Structure

    from omni_data.readers import get_reader

    struct = Structure(Lattice.cubic(3.0), ["Si"], [[0, 0, 0]])
    frame = {
        "structure": struct.as_dict(),
        "uncorrected_total_energy": -5.0,
        "corrected_total_energy": -5.5,
        "force": [[0.0, 0.0, 0.0]],
        "stress": [[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]],
        "magmom": None,
        "mp_id": "mp-149",
    }
    path = tmp_path / "MPtrj_tiny.json"
    path.write_text(json.dumps({"mp-149": {"mp-149-0-0": frame}}))
    opts = load_manifest("mptrj").read_options()
    reader = get_reader("mptrj_json")
    (rec,) = [r for p in reader.partitions(path, 10) for r in reader.read(p, opts)]
    assert rec.energy == -5.0 and rec.task == "mpa"
    assert rec.stress[0] == pytest.approx(-10 * KBAR_EVA3)
    assert rec.stress[0] == pytest.approx(-0.006241509, rel=1e-6)


def _base() -> dict:
    return yaml.safe_load(open(load_manifest("mad").path))


@pytest.mark.parametrize(
    "change, key",
    [
        ({"format": "nope"}, "format"),
        ({"units": {"energy": "furlong"}}, "units.energy"),
        ({"filters": {"max_force": -1}}, "filters.max_force"),
        ({"filters": {"energy_per_atom": [5, 1]}}, "filters.energy_per_atom"),
        ({"energy": {"kind": "potential"}}, "energy.kind"),
        ({"task_rules": [{"field": "spin"}]}, "task_rules[0]"),
    ],
)
def test_bad_manifest_names_key(change, key):
    data = _base()
    data.update(change)
    with pytest.raises(ManifestError, match=rf"bad\.yaml: key '{key.replace('[', '.').replace(']', '.')}"):
        parse_manifest(data, "bad.yaml")


def test_unknown_top_level_key_names_file_key_and_near_miss():
    data = _base()
    data["licnece"] = data.pop("licence")
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, "bad.yaml")
    assert str(info.value).startswith(
        "bad.yaml: key 'licence': required; unknown key 'licnece' (did you mean 'licence'? allowed: aliases, citation,"
    )


def test_missing_required_key():
    data = _base()
    del data["licence"]
    with pytest.raises(ManifestError, match="key 'licence': required"):
        parse_manifest(data, "bad.yaml")


# --- YAML errors: one line naming the file and the 1-based line, never a traceback (issue 17, item 8)


def _manifest_text() -> str:
    return open(load_manifest("mad").path, encoding="utf-8").read()


def test_manifest_bad_syntax_names_file_and_line(tmp_path):
    lines = _manifest_text().splitlines()
    lines.insert(3, "task_rules: [{field: spin, task: x}")  # line 4: a flow sequence never closed
    path = tmp_path / "broken.yaml"
    path.write_text("\n".join(lines[:6]) + "\n", encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert message.startswith(f"{path}:") and "not valid YAML" in message
    line = int(message[len(str(path)) + 1 :].split(":", 1)[0])
    assert 4 <= line <= 5  # the unclosed line or the next one, where the parser gives up
    assert "\n" not in message


def test_manifest_python_tag_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.yaml"
    path.write_text(
        f"name: evil\ntask: pbe\ndescription: !!python/object/apply:os.system ['touch {marker}']\n", encoding="utf-8"
    )
    with pytest.raises(ManifestError, match=rf"^{path}:3: not valid YAML: .*'!!python/object/apply:os\.system'"):
        load_manifest(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "text, got", [("- name: a\n- name: b\n", "a list"), ("just text\n", "a str"), ("", "an empty file")]
)
def test_manifest_top_level_must_be_a_mapping(tmp_path, text, got):
    path = tmp_path / "listy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError, match=rf"^{path}:1: a manifest must be a mapping .*got {got}$"):
        load_manifest(path)


def test_manifest_repeated_key_is_an_error_not_an_overwrite(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(_manifest_text() + "task: other_task\n", encoding="utf-8")
    n_lines = path.read_text().count("\n")
    with pytest.raises(ManifestError, match=rf"^{path}:{n_lines}: not valid YAML: key 'task' given twice"):
        load_manifest(path)


def test_manifest_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: a\ndescription: caf\xe9\n")
    with pytest.raises(ManifestError, match=rf"^{path}:2: not UTF-8 text"):
        load_manifest(path)


def test_broken_manifest_in_the_folder_is_named_by_alias_lookup(tmp_path, monkeypatch):
    """Resolving an alias reads every manifest: a broken one is named, not a traceback."""
    (tmp_path / "good.yaml").write_text(_manifest_text(), encoding="utf-8")
    (tmp_path / "zz_bad.yaml").write_text("name: x\n  bad: indent\n", encoding="utf-8")
    monkeypatch.setenv("OMNI_MANIFESTS", str(tmp_path))
    with pytest.raises(ManifestError, match=r"zz_bad\.yaml:2: not valid YAML"):
        load_manifest("some_alias")


@pytest.mark.parametrize(
    "text, line, what",
    [
        ("omat24: /data/omat\nspice: [/a,\n", 3, "not valid YAML"),
        ("omat24: !!python/object/apply:os.system ['true']\n", 1, "!!python/object/apply:os.system"),
        ("- /data/omat\n", 1, "expected a mapping of dataset name to path"),
    ],
)
def test_sources_yaml_errors_are_manifest_errors(tmp_path, monkeypatch, text, line, what):
    from omni_data.sources import configured_sources

    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("OMNI_SOURCES", str(path))
    with pytest.raises(ManifestError, match=rf"^{path}:{line}: ") as info:
        configured_sources()
    assert what in str(info.value)


def test_sources_yaml_entry_without_a_path(tmp_path, monkeypatch):
    from omni_data.sources import configured_sources

    path = tmp_path / "sources.yaml"
    path.write_text("omat24: /data/omat\nspice:\n", encoding="utf-8")
    monkeypatch.setenv("OMNI_SOURCES", str(path))
    with pytest.raises(ManifestError, match=rf"^{path}: key 'spice': expected a path, got None"):
        configured_sources()
    path.write_text("omat24: ~/omat\n", encoding="utf-8")
    assert configured_sources() == {"omat24": Path.home() / "omat"}


# --- one typed reader for every manifest key (issue 20, item 5) and every missing key at once (22.7)


def _problem(change: dict, drop: tuple[str, ...] = ()) -> str:
    data = _base()
    for key in drop:
        del data[key]
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, "bad.yaml")
    assert "\n" not in str(info.value)
    return str(info.value)


def test_key_map_typo_names_file_key_and_near_miss():
    message = _problem({"key_map": {"enrgy": "REF_energy"}})
    assert message.startswith(
        "bad.yaml: key 'key_map.enrgy': unknown key_map key (did you mean 'energy'? known: numbers,"
    )


def test_reader_options_must_be_declared_by_the_reader():
    message = _problem({"reader_options": {"sidecar": True}})
    assert message == (
        "bad.yaml: key 'reader_options.sidecar': the extxyz reader has no such option "
        "(its options: plain_xyz, root, sidecar_txt)"
    )
    data = _base()
    data["reader_options"] = {"sidecar_txt": True}
    assert parse_manifest(data, "ok.yaml").read_options().options == {"sidecar_txt": True}


def test_level_of_theory_keys_and_content_are_checked():
    assert _problem({"level_of_theory": {"funtional": "PBE"}}).startswith(
        "bad.yaml: key 'level_of_theory.funtional': unknown level_of_theory key (did you mean 'functional'?"
    )
    data = _base()
    data["level_of_theory"] = {"basis": "def2-SVP", "code": ""}
    with pytest.raises(
        ManifestError,
        match=r"^bad\.yaml: key 'level_of_theory': must name at least one of code, "
        r"method, functional$",
    ):
        parse_manifest(data, "bad.yaml")


@pytest.mark.parametrize(
    "units, key, words",
    [
        ({"energy": "eV", "stress": "Pa"}, "units.stress", "unknown stress unit 'Pa'"),
        ({"length": "furlong"}, "units.length", "unknown length unit 'furlong'"),
        ({"stress_sign": 2}, "units.stress_sign", "must be 1 or -1, got 2"),
        ({"temperature": "K"}, "units.temperature", "unknown units key"),
    ],
)
def test_units_values_are_known_units(units, key, words):
    data = _base()
    data["units"] = units
    with pytest.raises(ManifestError, match=rf"^bad\.yaml: key '{key}': {words}"):
        parse_manifest(data, "bad.yaml")


def test_every_missing_key_and_every_problem_in_one_error():
    message = _problem(
        {"weight": "heavy", "files": [{"name": "a.xyz", "split": "training"}]},
        drop=("description", "level_of_theory", "licence", "citation"),
    )
    assert message.startswith("bad.yaml: keys 'description', 'level_of_theory', 'licence', 'citation': required; ")
    assert "key 'files[0].split': must be one of train, val, test, all, got 'training'" in message
    assert "key 'weight' must be a number, got 'heavy'" in message


def test_manifest_may_not_set_its_own_path():
    assert "unknown key 'path'" in _problem({"path": "/elsewhere.yaml"})


def test_declared_reader_options_are_the_ones_the_readers_read():
    """Every ``opts.options[...]`` a reader module reads is declared in its ``ReaderSpec`` (or in
    ``COMMON_OPTIONS`` for the shared helpers) and every declared option is read."""
    import re

    from omni_data.readers import COMMON_OPTIONS, READERS

    folder = Path(__file__).resolve().parents[1] / "omni_data" / "readers"
    pattern = re.compile(r"""options(?:\.get\(|\[)\s*["']([a-z_]+)["']""")
    read_by = {p.stem: set(pattern.findall(p.read_text(encoding="utf-8"))) for p in folder.glob("*.py")}
    helpers = set().union(*(names for stem, names in read_by.items() if stem.startswith("_")))
    assert helpers == set(COMMON_OPTIONS)
    for name, spec in READERS.items():
        assert read_by.get(name, set()) == {n for n, _ in spec.options}, name


def test_unknown_dataset_suggests_the_close_name(tmp_path, monkeypatch):
    from omni_data.manifest import UnknownDataset

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownDataset) as info:
        load_manifest("mpttrj")
    message = str(info.value)
    assert message.startswith("unknown dataset 'mpttrj' (did you mean 'mptrj'?): no such manifest in ")
    assert "; known: bridge, mad, matpes_pbe," in message and message.endswith("; no such file either")
    with pytest.raises(UnknownDataset, match=r"^unknown dataset 'omatt' \(did you mean 'omat24'\?\)"):
        load_manifest("omatt")  # the alias 'omat' is close: its manifest's name is suggested


def test_resolve_target_tells_manifest_from_data_path(tmp_path, monkeypatch):
    from omni_data.manifest import UnknownDataset, resolve_target

    monkeypatch.chdir(tmp_path)
    (tmp_path / "frames").mkdir()
    assert resolve_target("mptrj").name == "mptrj"
    assert resolve_target("omat").name == "omat24"
    assert resolve_target("frames") is None and resolve_target("new.xyz") is None
    assert resolve_target("mpttrj", allow_plain=True) is None
    with pytest.raises(UnknownDataset, match="did you mean 'mptrj'"):
        resolve_target("mpttrj")


def test_docs_manifests_lists_every_key_and_reader_option():
    import dataclasses

    from omni_data.manifest import KEY_MAP_KEYS, LEVEL_OF_THEORY_KEYS, Manifest
    from omni_data.readers import READERS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "manifests.md").read_text(encoding="utf-8")
    for f in dataclasses.fields(Manifest):
        if f.name != "path":
            assert f"`{f.name}`" in doc, f.name
    for key in (*LEVEL_OF_THEORY_KEYS, *KEY_MAP_KEYS):
        assert f"`{key}`" in doc, key
    for name, spec in READERS.items():
        for option, _ in spec.options:
            assert f"| `{name}` | `{option}` |" in doc, (name, option)
