"""``omni-data manifest draft FILE`` (issue 22, item 7): a manifest drafted from a real file lists
what it holds, reports every missing key at once until the FILL IN lines are written, and then
validates and reads the file exactly as ASE does."""

from __future__ import annotations

import re

import numpy as np
import pytest

from omni_data.cli.main import main
from omni_data.manifest import ManifestError, load_manifest
from omni_data.manifest_draft import draft_manifest
from omni_data.readers import get_reader
from omni_data.units import KCAL_MOL_EV

FILLED = {
    "description": "HfO2 test frames",
    "code": "VASP",
    "functional": "SCAN",
    "basis": "plane waves",
    "licence": "MIT",
    "citation": "SevenNet test data",
}


def fill(text: str) -> str:
    """What the user does: write a value on every ``# FILL IN`` line."""

    def value(match: re.Match) -> str:
        return f'{match.group(1)}: "{FILLED[match.group(1).strip()]}"'

    return re.sub(r'^(\s*\w+): ""  # FILL IN.*$', value, text, flags=re.MULTILINE)


def _records(manifest, path):
    reader = get_reader(manifest.format)
    opts = manifest.read_options()
    return [r for part in reader.partitions(path, 100) for r in reader.read(part, opts)]


def test_draft_of_a_real_extxyz_validates_once_filled_and_reads_like_ase(shared_data, tmp_path):
    from ase.io import read

    source = shared_data / "extxyz" / "sevennet_hfo2.extxyz"
    draft = draft_manifest(source)
    assert draft.reader == "extxyz" and len(draft.records) == 2
    assert draft.key_map == {"energy": "energy", "forces": "forces", "stress": "stress"}
    assert draft.found == {"energy": 2, "forces": 2, "stress": 2}
    text = draft.text
    assert 'energy: "eV"  # review: energy per atom -28.98' in text
    assert 'stress: "eV/Å^3"  # review' in text and "free_energy (another energy)" in text
    path = tmp_path / "hfo2.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(info.value) == (
        f"{path}: keys 'description', 'licence', 'citation': required; key 'level_of_theory': "
        "must name at least one of code, method, functional"
    )
    path.write_text(fill(text), encoding="utf-8")
    m = load_manifest(path)
    assert (m.name, m.format, m.units) == (
        "sevennet_hfo2",
        "extxyz",
        {"energy": "eV", "length": "Å", "stress": "eV/Å^3"},
    )
    records = _records(m, source)
    frames = read(source, index=":")
    assert len(records) == len(frames) == 2
    for rec, atoms in zip(records, frames):
        assert rec.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(rec.forces, atoms.get_forces(), atol=1e-8)
        np.testing.assert_allclose(rec.stress, atoms.get_stress(voigt=True), atol=1e-10)


def test_draft_guesses_kcal_per_mol_for_md17_and_the_manifest_converts(shared_data, tmp_path):
    from ase.io import read

    source = shared_data / "extxyz" / "schnetpack_md17_ethanol_2000frames_kcalmol.extxyz"
    draft = draft_manifest(source, n_records=3, name="ethanol")
    assert 'energy: "kcal/mol"  # review: energy -97195 is 1.01' in draft.text
    assert 'length: "Å"  # review: shortest distance 0.995' in draft.text
    path = tmp_path / "ethanol.yaml"
    path.write_text(fill(draft.text), encoding="utf-8")
    m = load_manifest(path)
    first = read(source, index=0)
    rec = _records(m, source)[0]
    assert rec.energy == pytest.approx(first.get_potential_energy() * KCAL_MOL_EV, rel=1e-12)
    np.testing.assert_allclose(rec.forces, first.get_forces() * KCAL_MOL_EV, rtol=1e-12)


def test_draft_says_when_no_energy_was_found(shared_data):
    draft = draft_manifest(shared_data / "extxyz" / "schnetpack_md17_ethanol_snip_kcalmol.xyz")
    assert "energy" not in draft.found
    assert "# NO ENERGY found: map the file's energy key below" in draft.text


def test_cli_draft_then_check(shared_data, tmp_path, capsys):
    source = shared_data / "extxyz" / "sevennet_hfo2.extxyz"
    out = tmp_path / "my.yaml"
    assert main(["manifest", "draft", str(source), "--out", str(out)]) == 0
    assert "fill the 6 '# FILL IN' lines" in capsys.readouterr().err
    assert main(["manifest", "draft", str(source), "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"omni-data manifest: error: {out}: already exists; pass --force to replace it\n"
    assert main(["manifest", "check", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"omni-data manifest: error: {out}: keys 'description', 'licence', 'citation': required;")
    out.write_text(fill(out.read_text(encoding="utf-8")), encoding="utf-8")
    assert main(["manifest", "check", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: valid manifest 'sevennet_hfo2': extxyz reader")
    assert main(["manifest", "draft", str(tmp_path / "nothing.xyz")]) == 1
    assert "nothing.xyz: data file does not exist" in capsys.readouterr().err


def test_cli_draft_of_a_folder_no_reader_knows_calls_it_a_folder(tmp_path, capsys):
    """Before: ``src: no reader recognises this file`` for a folder; now the folder is looked into
    (``pipeline.resolve.sniff_source``) and named as a folder."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("nothing to read\n")
    assert main(["manifest", "draft", str(src)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"omni-data manifest: error: {src}: no file in this folder (1 looked at) is recognised by a "
        "reader; pass --format (one of extxyz, asedb, aselmdb, vasp, mptrj_json, matpes_json, "
        "pyg_lmdb, spice_hdf5, ani_hdf5, qcml)\n"
    )
    assert "this file" not in err


def test_draft_of_a_folder_reads_its_files(tmp_path):
    """A folder of extxyz files drafts from its files in name order (before: no reader for the
    folder; with --format, IsADirectoryError)."""
    from omni_data.store.testing import emt_records, write_extxyz

    src = tmp_path / "frames"
    src.mkdir()
    write_extxyz(emt_records(2, seed=3), src / "a.extxyz")
    write_extxyz(emt_records(4, seed=4), src / "b.extxyz")
    (src / "README").write_text("two files\n")
    draft = draft_manifest(src, n_records=5)
    assert draft.reader == "extxyz" and len(draft.records) == 5
    assert [r.source_file.rsplit("/", 1)[-1] for r in draft.records] == ["a.extxyz"] * 2 + ["b.extxyz"] * 3
    assert draft.found["energy"] == 5 and 'name: "frames"' in draft.text


def test_draft_of_an_lmdb_environment_folder_reads_it_as_one_source(tmp_path):
    """A folder whose own name fits a reader (``frames.lmdb/`` holding data.mdb) is still read as
    one LMDB environment, as before folders were looked into."""
    import pickle

    import lmdb

    env_dir = tmp_path / "frames.lmdb"
    env = lmdb.open(str(env_dir), subdir=True, map_size=1 << 24, meminit=False)
    with env.begin(write=True) as txn:
        for i in range(3):
            frame = {
                "pos": np.array([[0.0, 0, 0], [0, 0, 0.74 + 0.01 * i]]),
                "atomic_numbers": np.array([1, 1]),
                "natoms": 2,
                "force": np.zeros((2, 3)),
                "y": -31.0 - i,
            }
            txn.put(str(i).encode("ascii"), pickle.dumps(frame, protocol=4))
        txn.put(b"length", pickle.dumps(3, protocol=4))
    env.close()
    draft = draft_manifest(env_dir, n_records=5)
    assert draft.reader == "pyg_lmdb" and len(draft.records) == 3
    assert [float(r.energy) for r in draft.records] == [-31.0, -32.0, -33.0]
