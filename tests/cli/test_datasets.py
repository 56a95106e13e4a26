"""omni-data datasets lists all fifteen manifests and sees a configured local copy."""
from __future__ import annotations

import json

from omni_data.cli.main import main


def test_datasets_json_lists_fifteen_and_local_source(tmp_path, monkeypatch, capsys):
    (tmp_path / "spice").mkdir()
    monkeypatch.setenv("OMNI_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("OMNI_SOURCES", str(tmp_path / "none.yaml"))
    assert main(["datasets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows) == 15
    assert rows["spice"]["local"] == str(tmp_path / "spice")
    assert rows["omat24"]["local"] == ""
    assert rows["omol25"]["task"] == "omol25_low,omol25_high"
    assert "ωB97M-V" in rows["omol25"]["level_of_theory"]


def test_datasets_table_prints(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["name", "task"]
    assert "matpes_r2scan" in out
