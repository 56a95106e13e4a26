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
    with pytest.raises(argparse.ArgumentTypeError, match="taken is a file, not a folder; name a new or existing folder"):
        out_dir(str(tmp_path / "taken"))


def test_out_file_refuses_a_folder(tmp_path: Path) -> None:
    assert out_file(str(tmp_path / "a.extxyz")) == tmp_path / "a.extxyz"
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder; name the file to write"):
        out_file(str(tmp_path))


def test_omni_train_out_on_a_file_is_one_usage_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "taken").write_text("x")
    assert train_cli.main(["train", "small", "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert err == (f"omni-train train: error: argument --out: {tmp_path / 'taken'} is a file, not a folder; "
                   "name a new or existing folder (see omni-train train --help)\n")
