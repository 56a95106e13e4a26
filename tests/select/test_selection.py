"""select-bridge end to end on small stores built from the real sample files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from omni_data.cli.main import main
from omni_data.select._fps_reference import fps_reference
from omni_data.select.selection import SelectConfig, select_bridge, start_row
from omni_data.select.strategies import calculator_scorer
from omni_data.store import Store, write_shard

from .conftest import read_records


@pytest.fixture(scope="module")
def stores(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    a, b = root / "crystals", root / "molecules"
    write_shard(a, "nboc", read_records(shared_data, "vasp/chgnet_nboc_relax_49steps.OUTCAR", ":", "pbe"))
    write_shard(a, "feo", read_records(shared_data, "vasp/custodian_postprocess_ggau_spin_relax.OUTCAR", ":", "pbe"))
    write_shard(a, "hfo2", read_records(shared_data, "extxyz/sevennet_hfo2.extxyz", ":", "scan"))
    write_shard(
        b,
        "spice",
        read_records(shared_data, "extxyz/chemreporter_spice_amino_acid_ligand_26frames.extxyz", ":", "wb97m"),
    )
    write_shard(
        b,
        "md17",
        read_records(shared_data, "extxyz/schnetpack_md17_ethanol_2000frames_kcalmol.extxyz", "::25", "pbe-ts"),
    )
    for s in (a, b):
        assert main(["describe", str(s), "--no-cluster"]) == 0
    return [str(a), str(b)]


def _all_descriptors(paths):
    from omni_data.select.descriptor_set import load_descriptor_set

    return load_descriptor_set(paths)


def test_describe_writes_aligned_sidecars_and_resumes(stores, capsys):
    store = Store(stores[0])
    with np.load(f"{stores[0]}/sidecars/descriptors-rdf/nboc.npz") as z:
        assert z["x"].shape == (49, 64) and z["x"].dtype == np.float32
        assert z["ids"].tolist() == store.table(["id"], shard="nboc").column("id").to_pylist()
    assert store.catalog.reload().sections["descriptors"]["rdf"]["dim"] == 64
    capsys.readouterr()
    assert main(["describe", stores[0], "--no-cluster", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped_shards"] == 3
    # the CLI error policy (omni_data/cli/errors.py): one line on stderr, exit 2 for a bad value
    assert main(["describe", stores[0], "--no-cluster", "--cutoff", "4"]) == 2
    assert "were made with" in capsys.readouterr().err


def test_describe_again_with_other_settings_after_deleting_sidecars(tmp_path):
    import shutil

    from omni_data.store.testing import emt_records

    path = tmp_path / "s"
    write_shard(path, "s0", emt_records(3, seed=2))
    assert main(["describe", str(path), "--no-cluster"]) == 0
    shutil.rmtree(path / "sidecars" / "descriptors-rdf")
    assert main(["describe", str(path), "--no-cluster", "--gaussians", "4"]) == 0
    with np.load(path / "sidecars" / "descriptors-rdf" / "s0.npz") as z:
        assert z["x"].shape == (3, 16 + 6 * 4)
    assert Store(path).catalog.sections["descriptors"]["rdf"]["dim"] == 40


def test_fps_selection_min_per_task_and_files(stores, tmp_path):
    out = tmp_path / "round1"
    assert (
        main(
            [
                "select-bridge",
                *stores,
                "--count",
                "12",
                "--min-per-task",
                "2",
                "--seed",
                "3",
                "--out",
                str(out),
                "--no-cluster",
            ]
        )
        == 0
    )
    table = pq.read_table(out / "selection.parquet").to_pandas()
    assert list(table.columns) == ["id", "task", "dataset", "store", "rank", "distance", "reason", "score"]
    assert len(table) == 12 and table["rank"].tolist() == list(range(12))
    counts = table["task"].value_counts().to_dict()
    assert set(counts) == {"pbe", "scan", "wb97m", "pbe-ts"} and min(counts.values()) >= 2
    assert (table["reason"] == "min-per-task").any()  # the top-up path ran
    # the picks before any top-up are plain FPS with fpsample's start rule
    ds = _all_descriptors(stores)
    ref, _ = fps_reference(ds.x, 12, start_row(3, len(ds)))
    plain = table[table["reason"] == "strategy"]
    assert plain["id"].tolist() == ds.ids[ref[: len(plain)]].tolist()
    report = json.loads((out / "coverage.json").read_text())
    assert report["n_picked"] == 12 and set(report["tasks"]) == set(counts)
    assert report["tasks"]["scan"]["picks"] == counts["scan"]
    assert "covering radius" in (out / "coverage.txt").read_text()


def test_second_round_extends_the_first(stores, tmp_path):
    first, second = tmp_path / "r1", tmp_path / "r2"
    select_bridge(SelectConfig(stores=stores, out=str(first), count=8))
    select_bridge(SelectConfig(stores=stores, out=str(second), count=6, exclude=[str(first / "selection.parquet")]))
    a = pq.read_table(first / "selection.parquet").column("id").to_pylist()
    b = pq.read_table(second / "selection.parquet").column("id").to_pylist()
    assert not set(a) & set(b)
    # identical to continuing the first FPS run for 6 more picks
    ds = _all_descriptors(stores)
    ref, _ = fps_reference(ds.x, 17, start_row(0, len(ds)))
    assert ds.ids[ref[:14]].tolist() == a + b
    # a third round from the command line, seeded with both earlier selections
    third = tmp_path / "r3"
    assert (
        main(
            [
                "select-bridge",
                *stores,
                "--count",
                "3",
                "--seed-from",
                str(first / "selection.parquet"),
                str(second / "selection.parquet"),
                "--out",
                str(third),
                "--no-cluster",
            ]
        )
        == 0
    )
    c = pq.read_table(third / "selection.parquet").column("id").to_pylist()
    assert c == ds.ids[ref[14:]].tolist()
    assert json.loads((third / "coverage.json").read_text())["n_seeds"] == 14


def test_distributed_mode_picks_what_exact_picks(stores, tmp_path):
    def ids(folder: str) -> list[str]:
        return pq.read_table(tmp_path / folder / "selection.parquet").column("id").to_pylist()

    exact = select_bridge(SelectConfig(stores=stores, out=str(tmp_path / "e"), count=10))
    dist = select_bridge(SelectConfig(stores=stores, out=str(tmp_path / "d"), count=10, mode="distributed", top=3))
    assert dist["picked"] == 10 and ids("d") == ids("e")
    assert dist["covering_radius"] == exact["covering_radius"]
    # a task filter: each shard loads only its candidate rows
    ex = select_bridge(SelectConfig(stores=stores, out=str(tmp_path / "xe"), count=6, tasks=["pbe", "wb97m"]))
    di = select_bridge(
        SelectConfig(stores=stores, out=str(tmp_path / "xd"), count=6, mode="distributed", tasks=["pbe", "wb97m"])
    )
    table = pq.read_table(tmp_path / "xd" / "selection.parquet").to_pandas()
    assert set(table["task"]) <= {"pbe", "wb97m"} and len(set(table["id"])) == 6
    assert di["candidates"] == ex["candidates"] == 49 + 28 + 26
    assert ids("xd") == ids("xe")
    # coverage: from the shards' final distances, or (min-per-task changed the picks) a second pass
    for flag in (0, 4):
        a, b = f"me{flag}", f"md{flag}"
        select_bridge(SelectConfig(stores=stores, out=str(tmp_path / a), count=20, min_per_task=flag))
        select_bridge(
            SelectConfig(stores=stores, out=str(tmp_path / b), count=20, min_per_task=flag, mode="distributed")
        )
        assert ids(a) == ids(b)
        reasons = set(pq.read_table(tmp_path / b / "selection.parquet").column("reason").to_pylist())
        assert ("min-per-task" in reasons) == bool(flag)  # flag 4: top-ups, so the second pass
        ca, cb = (json.loads((tmp_path / f / "coverage.json").read_text()) for f in (a, b))
        assert ca["tasks"].keys() == cb["tasks"].keys() and ca["n_points"] == cb["n_points"]
        for task, row in ca["tasks"].items():
            assert cb["tasks"][task]["covering_radius"] == pytest.approx(row["covering_radius"], rel=1e-12)
            assert cb["tasks"][task]["mean_distance"] == pytest.approx(row["mean_distance"], rel=1e-9)
            assert cb["tasks"][task]["picks"] == row["picks"]


def test_error_and_hybrid_strategies_with_a_real_calculator(tmp_path):
    from ase.calculators.emt import EMT
    from ase.calculators.lj import LennardJones

    from omni_data.store.testing import emt_records

    path = tmp_path / "emt"
    write_shard(path, "s0", emt_records(30, seed=1))
    assert main(["describe", str(path), "--no-cluster"]) == 0
    scorer = calculator_scorer(lambda task: LennardJones(sigma=2.3, epsilon=0.2, rc=6.0))
    res = select_bridge(
        SelectConfig(stores=[str(path)], out=str(tmp_path / "err"), count=5, strategy="error"), scorer=scorer
    )
    table = pq.read_table(tmp_path / "err" / "selection.parquet").to_pandas()
    store = Store(path)
    every = {r.id: scorer([r])[0] for r in store}
    top = sorted(every, key=lambda i: -every[i])[:5]
    assert table["id"].tolist() == top and res["picked"] == 5
    np.testing.assert_allclose(table["score"], [every[i] for i in top])
    select_bridge(
        SelectConfig(stores=[str(path)], out=str(tmp_path / "hyb"), count=4, strategy="hybrid", pool=2.0), scorer=scorer
    )
    hyb = pq.read_table(tmp_path / "hyb" / "selection.parquet").column("id").to_pylist()
    pool = sorted(every, key=lambda i: -every[i])[:8]
    assert set(hyb) <= set(pool) and len(set(hyb)) == 4
    # EMT is the labelling calculator: zero error everywhere
    zero = calculator_scorer(lambda task: EMT())([store[0], store[1]])
    np.testing.assert_allclose(zero, 0.0, atol=1e-9)


def test_clear_errors(stores, tmp_path, capsys):
    with pytest.raises(ValueError, match="needs a model"):
        select_bridge(SelectConfig(stores=stores, out=str(tmp_path / "a"), count=3, strategy="error"))
    with pytest.raises(ValueError, match="exceeds"):
        select_bridge(SelectConfig(stores=stores, out=str(tmp_path / "b"), count=3, min_per_task=2))
    with pytest.raises(ValueError, match="exactly one"):
        SelectConfig(stores=stores, out="x", count=3, fraction=0.1)
    bare = tmp_path / "bare"
    write_shard(bare, "s", read_records_one())
    with pytest.raises(FileNotFoundError, match="omni-data describe"):
        select_bridge(SelectConfig(stores=[str(bare)], out=str(tmp_path / "c"), count=1))
    capsys.readouterr()
    assert (
        main(
            [
                "select-bridge",
                *stores,
                "--count",
                "2",
                "--strategy",
                "error",
                "--out",
                str(tmp_path / "d"),
                "--no-cluster",
            ]
        )
        != 0
    )
    assert "strategy 'error' needs --model CKPT" in capsys.readouterr().err


def read_records_one():
    from omni_data.store.testing import emt_records

    return emt_records(2, seed=5)


def test_describe_on_a_local_dask_cluster(tmp_path, shared_data):
    from omni_data.pipeline.cluster import ClusterConfig, dask_client
    from omni_data.select.descriptors import describe_records
    from omni_data.select.sidecars import describe_store, load_shard

    path = tmp_path / "s"
    recs = read_records(shared_data, "structures/cif/chgnet_mp-1175469-Li9Co7O16.cif", ":", "pbe")
    recs += read_records(shared_data, "vasp/dpdata_h2o_md.vasprun.xml", ":", "pbe")
    write_shard(path, "a", recs[:2])
    write_shard(path, "b", recs[2:])
    with dask_client(ClusterConfig(mode="local", workers=1)) as client:
        done = describe_store(path, client=client)
    assert sorted(d["shard"] for d in done) == ["a", "b"]
    x, ids = load_shard(path, "rdf", "b")
    np.testing.assert_allclose(x, describe_records(recs[2:]), rtol=1e-6)
    assert ids.tolist() == [r.id for r in recs[2:]]


def test_tasks_filter_and_fraction(stores, tmp_path):
    res = select_bridge(SelectConfig(stores=stores, out=str(tmp_path / "t"), fraction=0.1, tasks=["pbe", "scan"]))
    table = pq.read_table(tmp_path / "t" / "selection.parquet").to_pandas()
    n_candidates = 49 + 28 + 2  # nboc + feo frames (pbe) + hfo2 (scan)
    assert res["candidates"] == n_candidates and len(table) == round(0.1 * n_candidates)
    assert set(table["task"]) <= {"pbe", "scan"}
    with pytest.raises(ValueError, match="not in the stores"):
        select_bridge(SelectConfig(stores=stores, out=str(tmp_path / "u"), count=2, tasks=["nope"]))


def test_progress_lines_and_per_task_covering_radius(stores, tmp_path, capsys):
    out = tmp_path / "p"
    summary = select_bridge(SelectConfig(stores=stores, out=str(out), count=9, seed=1, progress_every=1e-3))
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("select-bridge: 9/9 picks (100.0%)  radius ")
    assert err[-1].endswith("done")
    # coverage.json: covering radius overall and per task, against brute force on the vectors
    ds = _all_descriptors(stores)
    table = pq.read_table(out / "selection.parquet").to_pandas()
    picked = ds.x[[int(np.flatnonzero(ds.ids == i)[0]) for i in table["id"]]]
    d = np.sqrt(((ds.x[:, None, :].astype(np.float64) - picked[None].astype(np.float64)) ** 2).sum(-1).min(1))
    report = json.loads((out / "coverage.json").read_text())
    np.testing.assert_allclose(report["covering_radius"], d.max(), rtol=1e-6)
    for task in set(ds.tasks.tolist()):
        want = d[ds.tasks == task].max()
        np.testing.assert_allclose(report["tasks"][task]["covering_radius"], want, rtol=1e-6)
        np.testing.assert_allclose(summary["covering_radius_per_task"][task], want, rtol=1e-6)
    # the last pick's FPS distance is what the progress line called the radius
    assert f"radius {table['distance'].iloc[-1]:.6g}" in err[-1]
    quiet = tmp_path / "q"
    select_bridge(SelectConfig(stores=stores, out=str(quiet), count=9, seed=1, progress_every=0))
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress_every"):
        SelectConfig(stores=stores, out=str(quiet), count=9, progress_every=-1)


def test_distributed_coverage_keeps_candidate_vectors_off_the_client(stores, tmp_path, monkeypatch):
    from omni_data.select import descriptor_set

    ds = _all_descriptors(stores)
    real = descriptor_set.DescriptorSet.vectors

    def vectors(self, rows):  # the client may load the picks, never all candidates
        assert len(rows) <= 10, f"client loaded {len(rows)} candidate vectors"
        return real(self, rows)

    monkeypatch.setattr(descriptor_set.DescriptorSet, "vectors", vectors)
    out = tmp_path / "dist"
    summary = select_bridge(SelectConfig(stores=stores, out=str(out), count=10, mode="distributed", progress_every=0))
    monkeypatch.undo()
    table = pq.read_table(out / "selection.parquet").to_pandas()
    picked = ds.x[[int(np.flatnonzero(ds.ids == i)[0]) for i in table["id"]]]
    d = np.sqrt(((ds.x[:, None, :].astype(np.float64) - picked[None].astype(np.float64)) ** 2).sum(-1).min(1))
    report = json.loads((out / "coverage.json").read_text())
    assert report["n_points"] == len(ds) and report["n_picked"] == 10
    np.testing.assert_allclose(report["covering_radius"], d.max(), rtol=1e-6)
    np.testing.assert_allclose(summary["covering_radius"], d.max(), rtol=1e-6)
    for task in set(ds.tasks.tolist()):
        np.testing.assert_allclose(report["tasks"][task]["covering_radius"], d[ds.tasks == task].max(), rtol=1e-6)
        np.testing.assert_allclose(report["tasks"][task]["mean_distance"], d[ds.tasks == task].mean(), rtol=1e-6)
