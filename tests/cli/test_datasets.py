"""omni-data datasets lists all fifteen manifests and sees a configured local copy."""

from __future__ import annotations

import json
from pathlib import Path

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


def _manifest_dir(tmp_path, files):
    """A manifests folder holding one manifest: mad's, with ``files``."""
    import yaml

    from omni_data.manifest import load_manifest

    data = yaml.safe_load(Path(load_manifest("mad").path).read_text(encoding="utf-8"))
    data["files"] = files
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "mad.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


def test_datasets_shows_total_download_size(tmp_path, monkeypatch, capsys):
    files = [
        {"name": "a.xyz", "url": "https://example.org/a", "size_bytes": 1_200_000_000, "md5": "0" * 32},
        {"name": "b.xyz", "url": "https://example.org/b", "size_bytes": 300_000_000, "sha256": "0" * 64},
    ]
    monkeypatch.setenv("OMNI_MANIFESTS", str(_manifest_dir(tmp_path, files)))
    monkeypatch.setenv("OMNI_SOURCES", str(tmp_path / "none.yaml"))
    assert main(["datasets", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["files"], row["download_bytes"]) == (2, 1_500_000_000)
    assert main(["datasets"]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split()[3:5] == ["structures", "download"]
    start = header.index("download")
    assert line[start:].split()[:2] == ["1.5", "GB"]


def _row(files, exact=None, known=0, known_bytes=0, approx=0, estimate=0):
    return {
        "files": files,
        "download_bytes": exact,
        "download_known": known,
        "download_known_bytes": known_bytes,
        "download_approx": approx,
        "download_estimate_bytes": estimate,
    }


def test_datasets_download_cell_when_sizes_are_missing():
    from omni_data.cli.datasets import download_cell

    assert download_cell(_row(0)) == "-"
    assert download_cell(_row(1)) == "? (1 file)"
    assert download_cell(_row(5, known=2, known_bytes=2_500_000, estimate=2_500_000)) == ">= 2.5 MB (2/5 sizes)"


def test_datasets_download_cell_with_rounded_sizes():
    from omni_data.cli.datasets import download_cell

    assert download_cell(_row(3, known=1, known_bytes=1_000_000_000, approx=2, estimate=22_000_000_000)) == "~22.0 GB"
    assert download_cell(_row(4, approx=2, estimate=3_400_000_000)) == ">= ~3.4 GB (2/4 sizes)"


def test_datasets_sums_the_published_rounded_sizes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMNI_SOURCES", str(tmp_path / "none.yaml"))
    assert main(["datasets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    omat = rows["omat24"]
    assert (omat["files"], omat["download_bytes"], omat["download_known"], omat["download_approx"]) == (22, None, 0, 22)
    train_gb = (21, 7.1, 13, 7.3, 12, 6.4, 26, 24, 25, 32, 12)  # the fairchem table's rounded sizes
    val_mb = (218, 77, 135, 79, 122, 69, 261, 251, 282, 364, 118)
    assert omat["download_estimate_bytes"] == round(sum(train_gb) * 1e9) + sum(val_mb) * 10**6 == 187_776_000_000
    omol = rows["omol25"]  # train.tar.gz exact, the four others rounded
    assert (omol["download_known"], omol["download_approx"]) == (1, 4)
    rounded = 19_000_000_000 + 101_000_000_000 + 20_000_000_000 + 119_000_000
    assert omol["download_estimate_bytes"] == 488_754_888_740 + rounded
    assert rows["mad"]["download_estimate_bytes"] == (232 + 29 + 29) * 1024**2
    assert (rows["matpes_pbe"]["download_approx"], rows["matpes_pbe"]["download_estimate_bytes"]) == (0, 0)
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out.splitlines()
    start = out[0].index("download")
    cells = {line.split()[0]: line[start:].split()[0] for line in out[1:]}
    assert (cells["omat24"], cells["omol25"], cells["mad"], cells["matpes_pbe"], cells["mptrj"]) == (
        "~187.8",
        "~628.9",
        "~304.1",
        "?",
        "12.2",
    )


def test_misspelt_dataset_name_suggests_the_known_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["download", "mpttrj", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("omni-data download: error: unknown dataset 'mpttrj' (did you mean 'mptrj'?): ")
    assert "known: bridge, mad," in err and err.endswith("; no such file either\n")


def test_help_opens_with_a_sentence_for_users(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    opening = out.split("\n\n")[1]
    assert opening.startswith("Gather atomistic datasets (public ones and your own files) into one store")
    assert "omni-data download NAME --out DIR" in out and "omni-data manifest draft FILE" in out
    assert "module" not in opening and "add_arguments" not in out
