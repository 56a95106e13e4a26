"""A broken manifest or ``$OMNI_SOURCES`` YAML ends the command with one line naming the file and
line and a non-zero status: never a traceback (issue 17, item 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from omni_data.manifest import load_manifest

BROKEN_SOURCES = {
    "syntax": ("omat24: /data/omat24\nspice: [/data/spice,\n", 3, "not valid YAML"),
    "python_tag": ("mad: !!python/object/apply:os.system ['touch {marker}']\n", 1, "!!python/object/apply:os.system"),
    "not_a_mapping": ("- /data/omat24\n", 1, "expected a mapping of dataset name to path"),
}


def _omni_data(args: list[str], env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    env.pop("OMNI_DATA_ROOT", None)
    return subprocess.run(
        [sys.executable, "-m", "omni_data.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command", [["datasets"], ["ingest", "mad", "--out", "st", "--no-progress"]], ids=["datasets", "ingest"]
)
@pytest.mark.parametrize("case", sorted(BROKEN_SOURCES))
def test_broken_sources_yaml_is_one_line(tmp_path, command, case):
    text, line, what = BROKEN_SOURCES[case]
    marker = tmp_path / "ran"
    path = tmp_path / "sources.yaml"
    path.write_text(text.format(marker=marker), encoding="utf-8")
    proc = _omni_data(command, {"OMNI_SOURCES": str(path)}, tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    (message,) = proc.stderr.strip().splitlines()
    assert message.startswith(f"omni-data {command[0]}: ")
    assert f"{path}:{line}: " in message and what in message
    assert not marker.exists() and not (tmp_path / "st").exists()


def test_broken_manifest_is_one_line(tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "mad.yaml").write_text(Path(load_manifest("mad").path).read_text(encoding="utf-8"), encoding="utf-8")
    (manifests / "odd.yaml").write_text("name: odd\ntask: [pbe\n", encoding="utf-8")
    env = {"OMNI_MANIFESTS": str(manifests), "OMNI_SOURCES": str(tmp_path / "none.yaml")}
    for command in (["datasets"], ["ingest", "odd", "--source", str(tmp_path), "--out", "st"]):
        proc = _omni_data(command, env, tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        (message,) = proc.stderr.strip().splitlines()
        assert (
            message.startswith(f"omni-data {command[0]}: ") and f"{manifests / 'odd.yaml'}:3: not valid YAML" in message
        )


def test_main_prints_manifest_error_as_one_error_line(tmp_path, monkeypatch, capsys):
    """In process: ``main`` turns a ManifestError from any command into ``omni-data CMD: error: ...``."""
    from omni_data.cli.main import main

    path = tmp_path / "sources.yaml"
    path.write_text("a: 1\nb: 2\na: 3\n", encoding="utf-8")
    monkeypatch.setenv("OMNI_SOURCES", str(path))
    assert main(["datasets"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"omni-data datasets: error: {path}:3: not valid YAML: key 'a' given twice (first on line 1) (column 1)\n"
    )


def test_manifest_key_map_typo_ends_ingest_with_one_line_naming_file_and_key(tmp_path, monkeypatch, capsys):
    """``key_map: {enrgy: ...}`` used to load and leave the reader guessing; now it stops the command."""
    import yaml

    from omni_data.cli.main import main

    data = yaml.safe_load(Path(load_manifest("mad").path).read_text(encoding="utf-8"))
    data["key_map"] = {"enrgy": "REF_energy", "forces": "REF_forces"}
    data["reader_options"] = {"sidecar": True}
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "mad.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("OMNI_MANIFESTS", str(manifests))
    monkeypatch.setenv("OMNI_SOURCES", str(tmp_path / "none.yaml"))
    assert main(["ingest", "mad", "--source", str(tmp_path), "--out", str(tmp_path / "st"), "--no-cluster"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        f"omni-data ingest: error: {manifests / 'mad.yaml'}: key 'key_map.enrgy': unknown key_map key "
        "(did you mean 'energy'?"
    )
    assert "key 'reader_options.sidecar': the extxyz reader has no such option" in err
    assert not (tmp_path / "st").exists()
