"""Every YAML file a user hands Omni (manifest, $OMNI_SOURCES, protocol, training config) is read by
``omni_data.yamlfile.load_yaml``: plain YAML only, and errors are one line naming the file and line."""

from __future__ import annotations

import pytest
import yaml

from omni_data.yamlfile import _Loader, load_yaml


def test_loader_is_a_safe_loader():
    assert issubclass(_Loader, yaml.constructor.SafeConstructor)
    assert not issubclass(_Loader, (yaml.constructor.FullConstructor, yaml.constructor.UnsafeConstructor))


def test_load_yaml_reads_plain_yaml(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("a: 1\nb: [x, 2.5]\nc: {d: null}\n", encoding="utf-8")
    assert load_yaml(path) == {"a": 1, "b": ["x", 2.5], "c": {"d": None}}


def test_load_yaml_bad_character_names_line(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"a: 1\nb: 2\nc: x\x00\n")
    with pytest.raises(ValueError, match=rf"^{path}:3: not valid YAML: character #x0000 is not allowed"):
        load_yaml(path)


def test_protocol_yaml_error_names_file_and_line(tmp_path, monkeypatch):
    from omni_data.recompute.protocols import ProtocolError, load_protocol

    path = tmp_path / "evil.yaml"
    path.write_text("engine: tblite\nmethod: !!python/object/new:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match=rf"^{path}:2: not valid YAML: .*'!!python/object/new:os\.system'"):
        load_protocol(path)
    path.write_text("engine: tblite\nmethod:\n  name: GFN2-xTB\n name: x\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match=rf"^{path}:4: not valid YAML"):
        load_protocol(path)


def test_model_config_yaml_error_names_file_and_line(tmp_path):
    from omni_model.config import load_config

    path = tmp_path / "train.yaml"
    path.write_text("model:\n  channels: 16\n  channels: 32\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}:3: not valid YAML: key 'channels' given twice \(first on line 2\)"):
        load_config(path)
    path.write_text("model:\n  channels: [16\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}:3: not valid YAML") as info:
        load_config(path)
    assert "\n" not in str(info.value)
