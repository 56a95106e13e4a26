"""The harmonize commands (references, filter, dedup, split, pairs) end to end on small stores."""
from __future__ import annotations

import ase.io
import numpy as np
import pytest

from omni_data.cli.main import main
from omni_data.schema import Record
from omni_data.store import Store
from tests.harmonize.conftest import atoms_record, emt_alloys, make_store


@pytest.fixture()
def relax_store(shared_data, tmp_path):
    frames = ase.io.read(shared_data / "vasp/chgnet_nboc_relax_49steps.vasprun.xml", index=":10")
    recs = [atoms_record(f, "pbe", "nboc", i, source_file="relax") for i, f in enumerate(frames)]
    recs.append(atoms_record(frames[2], "pbe", "nboc", 99, source_file="copy"))
    return make_store(tmp_path / "s", {"a": recs[:6], "b": recs[6:]}), recs


def test_references_command(relax_store, capsys):
    store, recs = relax_store
    assert main(["references", str(store.path), "--no-cluster"]) == 0
    out = capsys.readouterr().out
    assert "pbe" in out and "std/atom before" in out
    section = Store(store.path).catalog.sections["references"]["pbe"]
    assert set(section["mu"]) == {"6", "8", "41"}


def test_filter_command_writes_masks_and_store(relax_store, tmp_path, capsys):
    store, recs = relax_store
    fmax = [np.linalg.norm(r.forces, axis=1).max() for r in recs]
    limit = float(np.median(fmax))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "name: nboc\ntask: pbe\ndescription: d\nformat: extxyz\nlevel_of_theory: {code: VASP}\n"
        f"licence: MIT\ncitation: c\nfilters: {{max_force: {limit}}}\n")
    assert main(["filter", str(store.path), "--manifest", str(manifest), "--out", str(tmp_path / "f"),
                 "--no-cluster"]) == 0
    n_drop = sum(f > limit for f in fmax)
    assert f"{n_drop} of {len(recs)} dropped" in capsys.readouterr().out
    out = Store(tmp_path / "f")
    assert len(out) == len(recs) - n_drop
    assert all(r.startswith("filter:max_force") for r in out.quarantine().column("reason").to_pylist())
    assert (store.path / "sidecars/filter/a.parquet").is_file()


def test_dedup_command(relax_store, tmp_path, capsys):
    store, _ = relax_store
    assert main(["dedup", str(store.path), "--drop-within-task", "--out", str(tmp_path / "d"),
                 "--no-cluster"]) == 0
    out = capsys.readouterr().out
    assert "task pbe" in out and "1 duplicate" in out and "nboc:2 = nboc:99" in out
    assert len(Store(tmp_path / "d")) == 10
    assert main(["dedup", str(store.path), "--drop-within-task"]) == 2


def test_split_command(relax_store, capsys):
    store, recs = relax_store
    assert main(["split", str(store.path), "--group-key", "source_file", "--seed", "1",
                 "--workers", "2"]) == 0
    from omni_data.harmonize.splits import split_of

    labels = split_of(Store(store.path))
    assert len(set(labels[:10])) == 1  # the ten relax frames are one group
    assert "grouped by source_file" in capsys.readouterr().out


def test_pairs_command(tmp_path, capsys):
    src = emt_alloys(8, seed=2)
    bridge = []
    for k, r in enumerate(src):
        b = Record(
            numbers=r.numbers, positions=r.positions, cell=r.cell, pbc=r.pbc,
            energy=r.energy + 0.1 * len(r.numbers), id=f"br:{k}", dataset="br", task="hi",
            metadata={"source_id": r.id, "source_task": r.task})
        bridge.append(b)
    s = make_store(tmp_path / "s", {"a": src, "b": bridge})
    assert main(["pairs", str(s.path)]) == 0
    out = capsys.readouterr().out
    assert "emt -> hi" in out and "+0.1000" in out
