"""select-bridge / describe faces: --device/--dtype through the torch engine, human summaries
and --json, and the strategy / descriptor-kind registries that the CLI choices come from."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from omni_data.cli.main import main
from omni_data.select.selection import SelectConfig, select_bridge
from omni_data.store import write_shard

from .test_fps import _clustered


def _records(n: int):
    from omni_data.schema import Record

    rng = np.random.default_rng(3)
    return [
        Record(
            numbers=np.array([1, 1]),
            positions=np.array([[0, 0, 0], [0, 0, 0.74 + 0.01 * i]]),
            id=f"h2:{i}",
            dataset="toy",
            task="mol" if i % 3 else "pbe",
            energy=float(rng.normal()),
        ).normalized()
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def clustered_store(tmp_path_factory):
    """A store whose rdf sidecar holds clustered 64-d vectors, every one twice: every argmax is a tie."""
    path = tmp_path_factory.mktemp("clu") / "store"
    write_shard(path, "s0", _records(900))
    assert main(["describe", str(path), "--no-cluster"]) == 0
    side = path / "sidecars" / "descriptors-rdf" / "s0.npz"
    with np.load(side) as z:
        ids = z["ids"]
    half = np.round(_clustered(450, 64, 12, seed=5), 1)
    x = np.concatenate([half, half])[np.random.default_rng(1).permutation(900)]
    np.savez(side, x=x.astype(np.float32), ids=ids)
    return str(path), x.astype(np.float32), ids


@pytest.fixture
def torch(optional):
    return optional("torch", "model")


def test_cpu_torch_engine_picks_what_the_numba_kernel_picks(clustered_store, tmp_path, torch):
    from omni_data.select._fps_reference import fps_reference
    from omni_data.select.fps import fps
    from omni_data.select.fps_torch import rounded
    from omni_data.select.selection import start_row

    path, x, ids = clustered_store
    runs = {}
    for name, extra in {"numba": {}, "torch32": {"engine": "torch"}, "torch16": {"dtype": "float16"}}.items():
        summary = select_bridge(
            SelectConfig(stores=[path], out=str(tmp_path / name), count=150, seed=4, progress_every=0, **extra)
        )
        runs[name] = pq.read_table(tmp_path / name / "selection.parquet").to_pandas()
        assert summary["picked"] == 150
    got = json.loads((tmp_path / "torch32" / "coverage.json").read_text())["settings"]
    assert (got["engine"], got["device"], got["dtype"]) == ("torch", "cpu", "float32")
    assert runs["torch32"]["id"].tolist() == runs["numba"]["id"].tolist()
    np.testing.assert_array_equal(runs["torch32"]["distance"], runs["numba"]["distance"])
    ref, _ = fps_reference(x, 150, start_row(4, len(x)))  # independent loop, ties = last index
    first, _ = fps_reference(x, 150, start_row(4, len(x)), "first")
    assert ref.tolist() != first.tolist()  # the tie rule decided picks
    assert runs["numba"]["id"].tolist() == ids[ref].tolist()
    half = fps(rounded(x, "float16"), 150, start_row(4, len(x)), engine="numba")
    assert runs["torch16"]["id"].tolist() == ids[half.indices].tolist()


def test_device_cuda_without_cuda_is_one_line(clustered_store, tmp_path, capsys, torch):
    path = clustered_store[0]
    code = main(
        [
            "select-bridge",
            path,
            "--count",
            "5",
            "--device",
            "cuda",
            "--dtype",
            "bfloat16",
            "--out",
            str(tmp_path / "gpu"),
            "--no-cluster",
        ]
    )
    err = capsys.readouterr().err
    if torch.cuda.is_available():  # a GPU machine: the run itself must work
        assert code == 0
        return
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "device 'cuda' asked for but torch sees no CUDA device" in err
    assert not (tmp_path / "gpu").exists()
    with pytest.raises(ValueError, match="--mode exact only"):
        SelectConfig(stores=[path], out="o", count=3, device="cuda", mode="distributed")
    with pytest.raises(ValueError, match="need engine 'torch'"):
        SelectConfig(stores=[path], out="o", count=3, dtype="float16", engine="numba")


def test_select_bridge_prints_a_summary_and_json_on_request(clustered_store, tmp_path, capsys):
    path = clustered_store[0]
    out = tmp_path / "human"
    assert (
        main(
            [
                "select-bridge",
                path,
                "--count",
                "30",
                "--min-per-task",
                "3",
                "--out",
                str(out),
                "--no-cluster",
                "--progress-every",
                "0",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    report = json.loads((out / "coverage.json").read_text())
    lines = text.strip().splitlines()
    assert lines[0].startswith("select-bridge: picked 30 of 900 candidates (strategy fps, exact) in ")
    assert lines[1].startswith(f"covering radius {report['covering_radius']:.6g} ")
    for task in ("mol", "pbe"):
        row = next(line for line in lines if line.split()[:1] == [task])
        assert row.split()[1:] == [
            str(report["tasks"][task]["picks"]),
            f"{report['tasks'][task]['covering_radius']:.6g}",
        ]
    assert lines[-1] == f"wrote {out / 'selection.parquet'}, {out / 'coverage.json'}, {out / 'coverage.txt'}"
    assert not text.lstrip().startswith("{")
    assert (
        main(
            [
                "select-bridge",
                path,
                "--count",
                "30",
                "--out",
                str(tmp_path / "m"),
                "--no-cluster",
                "--progress-every",
                "0",
                "--json",
            ]
        )
        == 0
    )
    blob = json.loads(capsys.readouterr().out)
    assert blob["picked"] == 30 and blob["candidates"] == 900
    assert blob["selection"] == str(tmp_path / "m" / "selection.parquet")


def test_describe_prints_a_summary_and_json_on_request(tmp_path, capsys):
    path = tmp_path / "s"
    write_shard(path, "a", _records(5))
    write_shard(path, "b", _records(4))
    capsys.readouterr()
    assert main(["describe", str(path), "--no-cluster"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"describe: 9 structures in 2 shards of {path} have rdf descriptors (2 shards described now)",
        f"wrote {path / 'sidecars' / 'descriptors-rdf'}/<shard>.npz",
    ]
    assert main(["describe", str(path), "--no-cluster", "--json"]) == 0
    blob = json.loads(capsys.readouterr().out)
    assert (blob["rows"], blob["shards"], blob["skipped_shards"]) == (9, 2, 2)


def test_cli_choices_come_from_the_registries(clustered_store, tmp_path, monkeypatch, capsys):
    from omni_data.select import descriptors, strategies
    from omni_data.select.strategies import Picks

    def strategy_first(req):
        """the first k candidates (a test strategy)"""
        rows = req.cand[: req.k]
        return Picks(rows, np.arange(1.0, len(rows) + 1)), None

    def natoms(records, spec, species):
        return np.array([[len(r.numbers), r.positions[1, 2]] for r in records], np.float32)

    monkeypatch.setitem(strategies.STRATEGIES, "first", strategy_first)
    monkeypatch.setitem(
        descriptors.DESCRIPTORS, "natoms", descriptors.DescriptorKind(natoms, "atom count and bond length")
    )
    path = clustered_store[0]
    assert (
        main(
            [
                "select-bridge",
                path,
                "--count",
                "4",
                "--strategy",
                "first",
                "--out",
                str(tmp_path / "f"),
                "--no-cluster",
                "--json",
            ]
        )
        == 0
    )
    ids = pq.read_table(tmp_path / "f" / "selection.parquet").column("id").to_pylist()
    assert ids == ["h2:0", "h2:1", "h2:2", "h2:3"]
    small = tmp_path / "n"
    write_shard(small, "a", _records(6))
    assert main(["describe", str(small), "--kind", "natoms", "--no-cluster"]) == 0
    with np.load(small / "sidecars" / "descriptors-natoms" / "a.npz") as z:
        np.testing.assert_allclose(z["x"][:, 1], 0.74 + 0.01 * np.arange(6), rtol=1e-6)
    capsys.readouterr()
    assert main(["select-bridge", path, "--count", "1", "--strategy", "nope", "--out", "x"]) == 2
    assert "invalid choice: 'nope' (choose from" in capsys.readouterr().err
