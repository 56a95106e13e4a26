"""Manifests: all fifteen databases validate; bad manifests fail naming the key."""
from __future__ import annotations

import json

import pytest
import yaml

from omni_data.manifest import ManifestError, list_manifests, load_manifest, parse_manifest
from omni_data.schema import Record
from omni_data.units import KBAR_EVA3

import numpy as np

FIFTEEN = {
    "mptrj": "mpa", "salex": "mpa", "omat24": "omat24", "matpes_pbe": "matpes_pbe",
    "matpes_r2scan": "matpes_r2scan", "mp_aloe": "matpes_r2scan", "mp_r2scan": "mp_r2scan",
    "oc20": "oc20", "oc22": "oc22", "odac23": "odac23", "omol25": "omol25_low", "spice": "spice",
    "qcml": "qcml", "mad": "pet_mad", "bridge": "bridge",
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
    frame = {"structure": struct.as_dict(), "uncorrected_total_energy": -5.0, "corrected_total_energy": -5.5,
             "force": [[0.0, 0.0, 0.0]], "stress": [[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]], "magmom": None,
             "mp_id": "mp-149"}
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
        ({"colour": "blue"}, "colour"),
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


def test_missing_required_key():
    data = _base()
    del data["licence"]
    with pytest.raises(ManifestError, match="key 'licence': required"):
        parse_manifest(data, "bad.yaml")
