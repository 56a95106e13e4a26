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
    # every frame is C8Nb16O8 (one relaxation): the three μ are not separately determined
    store, recs = relax_store
    assert main(["references", str(store.path), "--no-cluster"]) == 0
    out = capsys.readouterr().out
    section = Store(store.path).catalog.sections["references"]["pbe"]
    assert set(section["mu"]) == {"6", "8", "41"}
    assert section["element_frames"] == {"6": 11, "8": 11, "41": 11}
    assert section["element_status"] == {"6": "undetermined", "8": "undetermined", "41": "undetermined"}
    assert "task pbe: 11 structures with energy" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    for sym, z in (("C", "6"), ("O", "8"), ("Nb", "41")):
        assert lines[sym][:5] == [sym, z, f"{section['mu'][z]:.6f}", "11", "UNDETERMINED"]
    assert "note: underdetermined: C, O, Nb always occur in the same proportions (rank 1 < 3)" in out
    assert "{" not in out  # a table, not a JSON blob


def test_references_command_json(relax_store, capsys):
    import json

    store, _ = relax_store
    assert main(["references", str(store.path), "--no-cluster", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == Store(store.path).catalog.sections["references"]
    assert data["pbe"]["underdetermined"] and data["pbe"]["rank"] == 1


def test_references_command_fitted_elements(tmp_path, capsys):
    # random alloys: every μ determined, the table has no flag and the right structure counts
    # a second task holds only Cu and Ni: Al and Au are listed as absent (μ = 0), not as rows
    recs = emt_alloys(12, seed=4)
    other = emt_alloys(6, seed=8, task="pbe", dataset="cuni")
    for r in other:
        r.numbers = np.where(r.numbers % 2 == 0, 28, 29)
    store = make_store(tmp_path / "s", {"a": recs, "b": other})
    assert main(["references", str(store.path), "--no-cluster"]) == 0
    out = capsys.readouterr().out
    emt_block, pbe_block = out.split("\n\ntask pbe:")
    section = Store(store.path).catalog.sections["references"]
    for sym, z in (("Al", 13), ("Ni", 28), ("Cu", 29), ("Au", 79)):
        n = sum(bool((r.numbers == z).any()) for r in recs)
        row = next(line.split() for line in emt_block.splitlines() if line.startswith(f"  {sym} "))
        assert row == [sym, str(z), f"{section['emt']['mu'][str(z)]:.6f}", str(n)]
    assert "absent" not in emt_block
    assert [line.split()[0] for line in pbe_block.splitlines()[2:4]] == ["Ni", "Cu"]
    assert "  absent from this task (no reference; μ = 0 is used): Al, Au" in pbe_block
    assert "note:" not in out and "UNDETERMINED" not in out


def test_filter_command_writes_masks_and_store(relax_store, tmp_path, capsys):
    store, recs = relax_store
    fmax = [np.linalg.norm(r.forces, axis=1).max() for r in recs]
    limit = float(np.median(fmax))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "name: nboc\ntask: pbe\ndescription: d\nformat: extxyz\nlevel_of_theory: {code: VASP}\n"
        f"licence: MIT\ncitation: c\nfilters: {{max_force: {limit}}}\n"
    )
    assert (
        main(["filter", str(store.path), "--manifest", str(manifest), "--out", str(tmp_path / "f"), "--no-cluster"])
        == 0
    )
    n_drop = sum(f > limit for f in fmax)
    assert f"{n_drop} of {len(recs)} dropped" in capsys.readouterr().out
    out = Store(tmp_path / "f")
    assert len(out) == len(recs) - n_drop
    assert all(r.startswith("filter:max_force") for r in out.quarantine().column("reason").to_pylist())
    assert (store.path / "sidecars/filter/a.parquet").is_file()


def test_dedup_command(relax_store, tmp_path, capsys):
    store, _ = relax_store
    assert main(["dedup", str(store.path), "--drop-within-task", "--out", str(tmp_path / "d"), "--no-cluster"]) == 0
    out = capsys.readouterr().out
    assert "task pbe" in out and "1 duplicate" in out and "nboc:2 = nboc:99" in out
    assert len(Store(tmp_path / "d")) == 10
    assert main(["dedup", str(store.path), "--drop-within-task"]) == 2
    capsys.readouterr()
    # an existing --out (here the source store itself) is refused before any hashing
    assert main(["dedup", str(store.path), "--drop-within-task", "--out", str(store.path)]) == 2
    err = capsys.readouterr().err
    assert err == f"omni-data dedup: error: {store.path}: already exists; --out must name a new store folder\n"
    assert len(Store(store.path)) == 11 and Store(store.path).shard_names == ["a", "b"]


def test_dedup_command_json(relax_store, tmp_path, capsys):
    import json

    store, _ = relax_store
    assert (
        main(["dedup", str(store.path), "--no-cluster", "--json", "--drop-within-task", "--out", str(tmp_path / "d")])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert (data["records"], data["unique"], data["within_task"]) == (11, 10, {"pbe": 1})
    assert data["examples"] == [["nboc:2", "nboc:99"]] and data["stores"] == [str(store.path)]
    assert data["dropped"] == {"kept": 10, "dropped": 1}
    section = Store(store.path).catalog.sections["dedup"]
    assert {k: data[k] for k in section} == section


def test_split_command(relax_store, capsys):
    store, recs = relax_store
    assert main(["split", str(store.path), "--group-key", "source_file", "--seed", "1", "--workers", "2"]) == 0
    from omni_data.harmonize.splits import split_of

    labels = split_of(Store(store.path))
    assert len(set(labels[:10])) == 1  # the ten relax frames are one group
    assert "grouped by source_file" in capsys.readouterr().out


def _bridge_store(tmp_path, cu_ni_pairs: bool = False):
    src = emt_alloys(8, seed=2)
    if cu_ni_pairs:  # every structure CuNi-ordered 1:1: only δ_Cu + δ_Ni is fitted
        for r in src:
            r.numbers = np.array([29, 28] * (len(r.numbers) // 2))
    bridge = []
    for k, r in enumerate(src):
        b = Record(
            numbers=r.numbers,
            positions=r.positions,
            cell=r.cell,
            pbc=r.pbc,
            energy=r.energy + 0.1 * len(r.numbers),
            id=f"br:{k}",
            dataset="br",
            task="hi",
            metadata={"source_id": r.id, "source_task": r.task},
        )
        bridge.append(b)
    return make_store(tmp_path / "s", {"a": src, "b": bridge})


def test_pairs_command(tmp_path, capsys):
    s = _bridge_store(tmp_path)
    assert main(["pairs", str(s.path)]) == 0
    out = capsys.readouterr().out
    assert "emt -> hi" in out and "underdetermined" not in out
    assert "    δ (eV/atom): Al=+0.1000, Ni=+0.1000, Cu=+0.1000, Au=+0.1000" in out


def test_pairs_command_json(tmp_path, capsys):
    import json

    s = _bridge_store(tmp_path)
    assert main(["pairs", str(s.path), "--json"]) == 0
    [fit] = json.loads(capsys.readouterr().out)
    assert (fit["source_task"], fit["task"], fit["n_pairs"]) == ("emt", "hi", 8)
    assert fit["delta"] == pytest.approx({"13": 0.1, "28": 0.1, "29": 0.1, "79": 0.1}, abs=1e-9)
    assert [fit] == Store(s.path).catalog.sections["pairs"]


def test_pairs_command_underdetermined_is_flagged_in_cli_and_report(tmp_path, capsys):
    import html

    s = _bridge_store(tmp_path, cu_ni_pairs=True)
    assert main(["pairs", str(s.path)]) == 0
    out = capsys.readouterr().out
    assert "emt -> hi" in out and out.splitlines()[1].endswith("  underdetermined")
    assert "note: some elements always occur in the same proportions in these pairs" in out
    assert main(["report", str(s.path), "--out", str(tmp_path / "r"), "--no-cluster"]) == 0
    page = html.unescape((tmp_path / "r" / "report.html").read_text())
    row = page.split('<td class="l">emt → hi</td>', 1)[1].split("</tr>", 1)[0]
    assert row.startswith("<td>8</td>") and row.endswith("<td>underdetermined</td>")
