"""Manifests: all fifteen databases validate; bad manifests fail naming the key."""
from __future__ import annotations

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


def test_mptrj_stress_kbar_compression_positive_becomes_ase_sign():
    opts = load_manifest("mptrj").read_options()
    rec = Record(numbers=np.array([14]), positions=np.zeros((1, 3)), id="mptrj:x", dataset="mptrj", task="mpa",
                 stress=np.array([10.0, 10.0, 10.0, 0, 0, 0]))
    opts.convert(rec)
    # 10 kBar compressive = 1 GPa = 0.0062415 eV/Å^3, negative in ASE's sign
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
