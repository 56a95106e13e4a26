"""Issue 22 item 6: ``--out`` on an existing file is refused while parsing with one clear line
(not ``[Errno 17] File exists`` from deep inside the command)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from omni_data.cli.argtypes import out_dir, out_file
from omni_model import cli as train_cli


def test_out_dir_accepts_new_and_existing_folders_and_refuses_a_file(tmp_path: Path) -> None:
    assert out_dir(str(tmp_path)) == tmp_path
    assert out_dir(str(tmp_path / "new")) == tmp_path / "new"
    (tmp_path / "taken").write_text("x")
    with pytest.raises(
        argparse.ArgumentTypeError, match="taken is a file, not a folder; name a new or existing folder"
    ):
        out_dir(str(tmp_path / "taken"))


def test_out_file_refuses_a_folder(tmp_path: Path) -> None:
    assert out_file(str(tmp_path / "a.extxyz")) == tmp_path / "a.extxyz"
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder; name the file to write"):
        out_file(str(tmp_path))


def test_omni_train_out_on_a_file_is_one_usage_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "taken").write_text("x")
    assert train_cli.main(["train", "small", "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"omni-train train: error: argument --out: {tmp_path / 'taken'} is a file, not a folder; "
        "name a new or existing folder (see omni-train train --help)\n"
    )


def _store(path: Path) -> Path:
    from omni_data.store import write_shard
    from omni_data.store.testing import emt_records

    write_shard(path, "s0", emt_records(2, seed=1))
    return path


# command -> its other arguments ({tmp}: the test's folder, {store}: a small store there)
FOLDER_OUTS: dict[str, list[str]] = {
    "collect-bridge": ["{tmp}"],
    "dedup": ["{store}", "--drop-within-task"],
    "download": ["mptrj"],
    "emit-jobs": ["{tmp}/selection.parquet", "--protocol", "mp-pbe-static"],
    "filter": ["{store}", "--manifest", "mptrj", "--no-cluster"],
    "ingest": ["{tmp}", "--dataset", "d", "--task", "t", "--no-cluster"],
    "report": ["{store}", "--no-cluster"],
    "select-bridge": ["{store}", "--count", "1", "--no-cluster"],
}


@pytest.mark.parametrize("command", sorted(FOLDER_OUTS))
def test_omni_data_out_on_a_file_is_one_usage_line(command: str, tmp_path: Path, capsys) -> None:
    """Before: dedup/filter/report/... met the file later as ``[Errno 17] File exists`` (or wrote
    around it); now the parser refuses it before any work, and the file is left as it was."""
    from omni_data.cli.main import main

    store = _store(tmp_path / "store")
    taken = tmp_path / "taken"
    taken.write_text("x")
    args = [a.format(tmp=tmp_path, store=store) for a in FOLDER_OUTS[command]]
    assert main([command, *args, "--out", str(taken)]) == 2
    assert capsys.readouterr().err == (
        f"omni-data {command}: error: argument --out: {taken} is a file, not a folder; "
        f"name a new or existing folder (see omni-data {command} --help)\n"
    )
    assert taken.read_text() == "x"


def test_manifest_draft_out_is_a_file_a_folder_is_refused_and_force_replaces(tmp_path: Path, capsys) -> None:
    """``manifest draft --out`` names a file: a folder there is one usage line (before: a
    traceback-free but late ``IsADirectoryError``); an existing file needs --force, as before."""
    from omni_data.cli.main import main
    from omni_data.store.testing import emt_records, write_extxyz

    source = write_extxyz(emt_records(3, seed=2), tmp_path / "mine.extxyz")
    folder = tmp_path / "drafts"
    folder.mkdir()
    assert main(["manifest", "draft", str(source), "--out", str(folder)]) == 2
    assert capsys.readouterr().err == (
        f"omni-data manifest: error: argument --out: {folder} is a folder; name the file to write, "
        f"e.g. {folder / 'out'} (see omni-data manifest --help)\n"
    )
    assert list(folder.iterdir()) == []
    out = folder / "mine.yaml"
    out.write_text("old")
    assert main(["manifest", "draft", str(source), "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"omni-data manifest: error: {out}: already exists; pass --force to replace it\n"
    assert out.read_text() == "old"
    assert main(["manifest", "draft", str(source), "--out", str(out), "--force"]) == 0
    assert "format: extxyz" in out.read_text()
