"""``pipeline.resolve`` tells a manifest from a data path by exception type
(``manifest.UnknownDataset``), not by the words of an error message."""

from __future__ import annotations

from pathlib import Path

import pytest

from omni_data.cli.main import main
from omni_data.manifest import ManifestError
from omni_data.pipeline.resolve import is_manifest, manifest_of


def test_a_broken_manifest_is_named_even_when_its_path_reads_no_such_manifest(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Before: a ManifestError whose text held "no such manifest" (here: in the folder's name)
    was taken for "not a manifest", and ingest said ``mine: no such file or folder``."""
    folder = tmp_path / "no such manifest here"
    folder.mkdir()
    broken = folder / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    monkeypatch.setenv("OMNI_MANIFESTS", str(folder))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ManifestError, match="broken.yaml") as caught:
        is_manifest("mine")
    assert type(caught.value) is ManifestError  # not UnknownDataset: the file is broken
    assert main(["ingest", "mine", "--out", str(tmp_path / "st"), "--no-cluster", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"omni-data ingest: error: {broken}") and "no such file or folder" not in err
    assert not (tmp_path / "st").exists()


def test_manifest_of_names_data_paths_and_unknown_names_none(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "frames").mkdir()
    assert manifest_of("mptrj").name == "mptrj" and manifest_of("omat").name == "omat24"
    assert manifest_of("frames") is None and manifest_of("new.xyz") is None
    assert manifest_of("mpttrj") is None and not is_manifest("mpttrj")
