"""``omni-data ingest`` from a manifest (with filters) and from a plain path; exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from omni_data.cli.main import main
from omni_data.store import Store
from omni_data.store.testing import emt_records, write_extxyz


def test_ingest_plain_path_then_info_verify_export(tmp_path, capsys):
    src = write_extxyz(emt_records(10, seed=3), tmp_path / "d.extxyz")
    store = tmp_path / "st"
    rc = main(
        [
            "ingest",
            str(src),
            "--out",
            str(store),
            "--dataset",
            "d",
            "--task",
            "pbe",
            "--no-cluster",
            "--shard-size",
            "4",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "records read 10 = written 10 + quarantined 0" in out
    assert main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["records"] == 10 and info["shards"] == 3 and info["by_task"] == {"pbe": 10}
    assert set(info["by_element"]) == {"Al", "Cu", "Ni"} and info["bytes"]["lmdb"] > 0
    assert main(["info", str(store)]) == 0 and "10 records" in capsys.readouterr().out
    assert main(["verify", str(store)]) == 0
    (store / "shards" / sorted(p.name for p in (store / "shards").glob("*.lmdb"))[0]).unlink()
    assert main(["verify", str(store)]) == 1
    assert "lmdb file" in capsys.readouterr().err
    assert main(["export", str(store), "--format", "extxyz", "--out", str(tmp_path / "o.extxyz"), "--task", "pbe"]) == 1


def test_ingest_manifest_applies_units_and_filters(tmp_path, capsys):
    records = emt_records(9, seed=4)
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    write_extxyz(records, src_dir / "frames.xyz")
    biggest = sorted(float(np.linalg.norm(r.forces, axis=1).max()) for r in records)
    # energies declared in kcal/mol: the store must hold them converted to eV
    manifest = {
        "name": "toy",
        "task": "toy-pbe",
        "description": "EMT toy",
        "format": "extxyz",
        "level_of_theory": {"method": "EMT"},
        "licence": "CC0",
        "citation": "none",
        "globs": ["*.xyz"],
        "units": {"energy": "kcal/mol"},
        "filters": {"max_force": biggest[5] * 0.04336410390059322 * 1.0000001},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(manifest))
    store = tmp_path / "st"
    rc = main(["ingest", str(path), "--source", str(src_dir), "--out", str(store), "--no-cluster", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    s = Store(store)
    assert len(s) == 6 and s.catalog.counts["quarantined_by_reason"] == {"filter": 3}
    r = s[0]
    assert r.task == "toy-pbe" and r.energy == pytest.approx(records[r.source_index].energy * 0.04336410390059322)
    run = s.catalog.runs[-1]
    assert run["manifest"]["name"] == "toy" and run["versions"]["pyarrow"]
    assert "records read 9 = written 6 + quarantined 3 (filter: 3)" in out


def test_ingest_reports_bad_options(tmp_path, capsys):
    src = write_extxyz(emt_records(2), tmp_path / "d.extxyz")
    assert main(["ingest", str(src), "--out", str(tmp_path / "st"), "--no-cluster"]) == 2
    assert "pass --dataset and --task" in capsys.readouterr().err
    assert (
        main(
            [
                "ingest",
                str(src),
                "--out",
                str(tmp_path / "st"),
                "--dataset",
                "d",
                "--task",
                "t",
                "--shard-formats",
                "parquet",
                "--no-cluster",
            ]
        )
        == 2
    )


def test_info_on_a_folder_that_is_not_a_store_fails_naming_it(tmp_path, capsys):
    from omni_data.cli.main import main

    assert main(["info", str(tmp_path / "nope")]) == 1
    assert "nope: not a store (no catalog.json)" in capsys.readouterr().err
