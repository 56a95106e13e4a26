"""Issue 22 items 1, 2, 6, 8 and issue 21 item 4 at ingest: label coverage and missing energy,
sanity bounds and stress symmetry, frames already in the store, no empty store left behind,
where to put a dataset's files; and ``run_ingest`` as the library entry point (issue 20 item 3)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import lmdb
import numpy as np
import pytest

from omni_data.cli.main import main
from omni_data.pipeline.request import IngestRequest, run_ingest
from omni_data.store import Store
from omni_data.store.testing import emt_records, write_extxyz

GPA = 0.006241509125883258  # eV/Å³ per GPa (ase.units.GPa)


def _frame(i: int, stress: np.ndarray, energy_key: str = "potential-energy") -> dict:
    """One matsciml-style pickled dict: a 4-atom periodic cell with forces, stress, an energy."""
    rng = np.random.default_rng(i)
    cell = np.eye(3) * 4.0
    pos = np.array([[0, 0, 0], [2, 2, 0], [2, 0, 2], [0, 2, 2]], dtype=float) + rng.normal(0, 0.02, (4, 3))
    return {
        "pos": pos,
        "cell": cell[None],
        "atomic_numbers": np.array([29, 29, 29, 29]),
        "natoms": 4,
        "force": rng.normal(0, 0.3, (4, 3)),
        "stress": stress,
        energy_key: -14.5 - 0.01 * i,
    }


def _write_lmdb(path: Path, frames: list[dict]) -> Path:
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24, meminit=False)
    with env.begin(write=True) as txn:
        for i, frame in enumerate(frames):
            txn.put(str(i).encode("ascii"), pickle.dumps(frame, protocol=4))
        txn.put(b"length", pickle.dumps(len(frames), protocol=4))
    env.sync()
    env.close()
    return path


def _sym(scale: float, rng: np.random.Generator) -> np.ndarray:
    m = rng.normal(0, scale, (3, 3))
    return (m + m.T) / 2


def _ingest(*argv: str) -> int:
    return main(["ingest", *argv, "--no-cluster", "--no-progress"])


def test_missing_energy_is_reported_with_candidate_keys_and_key_map_reads_it(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = [_frame(i, _sym(0.01, rng)) for i in range(12)]
    src = _write_lmdb(tmp_path / "pe.lmdb", frames)
    assert _ingest(str(src), "--out", str(tmp_path / "st"), "--dataset", "pe", "--task", "t") == 0
    out = capsys.readouterr().out
    assert "labels pe: energy 0/12, forces 12/12, stress 12/12" in out
    assert (
        "WARNING: pe: none of the 12 records stored has an energy; source keys that look like one: "
        "potential-energy (12); to read one as the energy, re-run into a new store with "
        "--key-map energy=potential-energy"
    ) in out
    assert main(["info", str(tmp_path / "st")]) == 0
    assert "labels pe: energy 0/12, forces 12/12, stress 12/12" in capsys.readouterr().out

    assert (
        _ingest(
            str(src),
            "--out",
            str(tmp_path / "st2"),
            "--dataset",
            "pe",
            "--task",
            "t",
            "--key-map",
            "energy=potential-energy",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "labels pe: energy 12/12, forces 12/12, stress 12/12" in out and "WARNING" not in out
    stored = sorted(Store(tmp_path / "st2"), key=lambda r: r.source_index)
    assert [r.energy for r in stored] == [f["potential-energy"] for f in frames]
    assert main(["info", str(tmp_path / "st2"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["labels"] == {"pe": {"records": 12, "energy": 12, "forces": 12, "stress": 12}}
    assert info["labels_uncounted_shards"] == 0


def test_key_map_of_an_unknown_field_is_a_usage_error(tmp_path, capsys):
    src = write_extxyz(emt_records(2), tmp_path / "d.extxyz")
    assert (
        _ingest(str(src), "--out", str(tmp_path / "st"), "--dataset", "d", "--task", "t", "--key-map", "enrgy=E") == 2
    )
    assert "'enrgy' is not a field" in capsys.readouterr().err
    assert not (tmp_path / "st").exists()


def test_tpa_scale_stress_is_quarantined_and_stress_unit_declares_it(tmp_path, capsys):
    """The issue's case: stress of -17..-88 with no stated unit (GPa) read as eV/Å³."""
    rng = np.random.default_rng(1)
    stresses = [np.diag([-17.0 - 7 * i, -17.0 - 7 * i, -20.0 - 6 * i]) + _sym(0.5, rng) for i in range(11)]
    src = _write_lmdb(tmp_path / "gpa.lmdb", [_frame(i, s, "energy") for i, s in enumerate(stresses)])
    assert _ingest(str(src), "--out", str(tmp_path / "st"), "--dataset", "g", "--task", "t") == 1
    captured = capsys.readouterr()
    assert "records read 11 = written 0 + quarantined 11 (implausible: 11)" in captured.out
    assert "all 11 records read were quarantined" in captured.err and "--stress-unit" in captured.err
    reasons = Store(tmp_path / "st").quarantine().column("reason").to_pylist()
    assert len(reasons) == 11 and all(r.startswith("implausible:stress |σ|=") for r in reasons)

    assert (
        _ingest(str(src), "--out", str(tmp_path / "st2"), "--dataset", "g", "--task", "t", "--stress-unit", "GPa") == 0
    )
    stored = sorted(Store(tmp_path / "st2"), key=lambda r: r.source_index)
    assert len(stored) == 11
    for rec, s in zip(stored, stresses):
        np.testing.assert_allclose(
            rec.stress, np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]) * GPA, rtol=1e-12
        )


def test_non_symmetric_stress_symmetrised_within_tolerance_and_quarantined_beyond(tmp_path, capsys):
    rng = np.random.default_rng(2)
    frames, expected = [], []
    for i in range(9):
        s = _sym(0.01, rng)
        s[0, 1] += (2e-4, 0.0, 0.5)[i % 3]  # asymmetry 1e-4 (kept), 0 (kept), 0.25 eV/Å³ (quarantined)
        frames.append(_frame(i, s, "energy"))
        expected.append(s)
    src = _write_lmdb(tmp_path / "asym.lmdb", frames)
    assert _ingest(str(src), "--out", str(tmp_path / "st"), "--dataset", "a", "--task", "t") == 0
    out = capsys.readouterr().out
    assert "records read 9 = written 6 + quarantined 3 (implausible: 3)" in out
    assert "stress symmetrised: 3 records had a non-symmetric 3x3 stress" in out
    store = Store(tmp_path / "st")
    reasons = store.quarantine().column("reason").to_pylist()
    assert all(r.startswith("implausible:stress not symmetric: max |σij-σji|/2 = 0.25 eV/Å³") for r in reasons)
    for rec in store:
        s = expected[rec.source_index]
        assert rec.source_index % 3 != 2
        sym = (s + s.T) / 2
        np.testing.assert_allclose(
            rec.stress, [sym[0, 0], sym[1, 1], sym[2, 2], sym[1, 2], sym[0, 2], sym[0, 1]], rtol=1e-12
        )
        assert rec.metadata.get("stress_asymmetry", 0.0) == pytest.approx((1e-4, 0.0)[rec.source_index % 3])


def test_same_frames_under_another_name_warn_with_count_and_example(tmp_path, capsys):
    records = emt_records(6, seed=5)
    first = write_extxyz(records, tmp_path / "a.extxyz")
    (tmp_path / "copy").mkdir()
    second = write_extxyz(records, tmp_path / "copy" / "renamed.extxyz")
    store = tmp_path / "st"
    assert _ingest(str(first), "--out", str(store), "--dataset", "one", "--task", "t") == 0
    assert "WARNING" not in capsys.readouterr().out
    assert _ingest(str(second), "--out", str(store), "--dataset", "two", "--task", "t") == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert warnings == [
        (
            "WARNING: 6 frames ingested now have the same geometry as frames already in the store "
            "(e.g. two:renamed.extxyz:0 = one:a.extxyz:0); the same file under another name or "
            "dataset? `omni-data dedup` lists and drops them"
        )
    ]
    assert len(Store(store)) == 12  # a warning, not a refusal


def test_report_refuses_the_same_store_twice(tmp_path, capsys):
    store = tmp_path / "st"
    assert (
        _ingest(
            str(write_extxyz(emt_records(3), tmp_path / "d.extxyz")),
            "--out",
            str(store),
            "--dataset",
            "d",
            "--task",
            "t",
        )
        == 0
    )
    capsys.readouterr()
    assert main(["report", str(store), f"{tmp_path}/./st/", "--out", str(tmp_path / "rep"), "--no-cluster"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"store {store} given twice" in err[0] and err[0].startswith("omni-data report: error:")
    assert not (tmp_path / "rep").exists()


def test_failed_ingest_removes_the_store_folder_it_created(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("nothing to read\n")
    store = tmp_path / "new" / "st"
    assert _ingest(str(src), "--out", str(store), "--dataset", "d", "--task", "t", "--format", "extxyz") == 1
    assert "no files matching" in capsys.readouterr().err
    assert not store.exists()
    kept = tmp_path / "mine"
    kept.mkdir()  # a folder the user made is left as it was
    assert _ingest(str(src), "--out", str(kept), "--dataset", "d", "--task", "t", "--format", "extxyz") == 1
    assert kept.is_dir()


def test_a_folder_no_reader_knows_is_called_a_folder(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("nothing to read\n")
    assert _ingest(str(src), "--out", str(tmp_path / "st"), "--dataset", "d", "--task", "t") == 2
    err = capsys.readouterr().err
    assert "no file in this folder (1 looked at) is recognised by a reader; pass --format" in err
    assert "this file" not in err
    assert not (tmp_path / "st").exists()


def test_a_folder_of_one_format_is_sniffed(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    write_extxyz(emt_records(4, seed=8), tmp_path / "src" / "x.extxyz")
    assert _ingest(str(tmp_path / "src"), "--out", str(tmp_path / "st"), "--dataset", "d", "--task", "t") == 0
    assert "records read 4 = written 4 + quarantined 0" in capsys.readouterr().out


def test_manifest_without_a_local_copy_says_where_to_put_files_and_how_to_download(tmp_path, capsys, monkeypatch):
    from omni_data.manifest import load_manifest

    monkeypatch.setenv("OMNI_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("OMNI_SOURCES", str(tmp_path / "sources.yaml"))
    m = load_manifest("mptrj")
    assert any(f.url for f in m.files)
    assert _ingest("mptrj", "--out", str(tmp_path / "st")) == 2
    err = capsys.readouterr().err.strip()
    folder = tmp_path / "data" / "mptrj"
    assert err.count("\n") == 0 and err.startswith("omni-data ingest: error: manifest mptrj: no local copy of mptrj")
    assert f"`omni-data download mptrj --out {folder}`" in err and f"`omni-data ingest mptrj --source {folder}`" in err
    assert f"looked at {folder} (does not exist)" in err
    assert "add 'mptrj: DIR' there" in err and str(tmp_path / "sources.yaml") in err
    assert not (tmp_path / "st").exists()


def test_run_ingest_is_what_the_cli_runs(tmp_path):
    """The library entry point: same store and summary as the command, id index built."""
    src = write_extxyz(emt_records(7, seed=9), tmp_path / "d.extxyz")
    lines: list[str] = []
    summary = run_ingest(
        IngestRequest(
            target=str(src),
            out=tmp_path / "st",
            dataset="d",
            task="pbe",
            shard_size=3,
            progress=False,
            command=["test"],
        ),
        echo=lines.append,
    )
    assert summary.ok and summary.read == summary.written == 7 and summary.partitions == 3
    assert summary.coverage == {"d": {"records": 7, "energy": 7, "forces": 7, "stress": 4}}
    assert lines[0].startswith(f"ingest {src} (extxyz) as d/pbe -> {tmp_path / 'st'}")
    assert any(n.startswith(f"{tmp_path / 'st'}: indexed 7 ids of 3 shards") for n in summary.notes)
    store = Store(tmp_path / "st")
    assert store.get(store[4].id).id == store[4].id and store.catalog.runs[-1]["command"] == ["test"]
    with pytest.raises(ValueError, match="--shard-size must be >= 1"):
        run_ingest(IngestRequest(target=str(src), out=tmp_path / "st3", dataset="d", task="t", shard_size=0))


def test_real_relaxation_overshoot_frame_is_quarantined_with_its_reason(tmp_path, capsys, shared_data):
    """Every ingest applies the bounds: of CHGNet's 49-step NbOC relaxation only ionic step 1
    (two atoms 0.109 Å apart, 13,848 kBar) is quarantined, the other 48 frames stored."""
    src = shared_data / "vasp" / "chgnet_nboc_relax_49steps.vasprun.xml"
    assert _ingest(str(src), "--out", str(tmp_path / "st"), "--dataset", "nboc", "--task", "pbe") == 0
    out = capsys.readouterr().out
    assert "records read 49 = written 48 + quarantined 1 (implausible: 1)" in out
    assert "labels nboc: energy 48/48, forces 48/48, stress 48/48" in out
    q = Store(tmp_path / "st").quarantine()
    assert q.column("source_index").to_pylist() == [1]
    assert q.column("reason").to_pylist()[0].startswith("implausible:stress |σ|=8.643 eV/Å³ (1385 GPa")
    assert (
        _ingest(str(src), "--out", str(tmp_path / "all"), "--dataset", "nboc", "--task", "pbe", "--no-sanity-bounds")
        == 0
    )
    assert "records read 49 = written 49 + quarantined 0" in capsys.readouterr().out


def test_a_misspelt_dataset_name_lists_the_manifests(tmp_path, capsys):
    assert _ingest("mptrjj", "--out", str(tmp_path / "st")) == 2
    err = capsys.readouterr().err
    assert "mptrjj: no such file or folder, and no manifest of that name (known: " in err and " mptrj," in err
    assert _ingest("mptrjj", "--out", str(tmp_path / "st"), "--dataset", "d", "--task", "t") == 1
    assert "mptrjj: source path does not exist, and no manifest of that name (known: " in capsys.readouterr().err
    assert not (tmp_path / "st").exists()
