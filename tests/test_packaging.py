"""The built wheel carries every data file the commands need (issue 20, item 1).

``manifests/`` (datasets and protocols) is the top-level source of truth; ``omni_data/manifests`` is
a symlink to it, and the wheel holds real copies (docs/packaging.md). These tests build the wheel
from a copy of the checkout, compare its data files byte for byte with the checkout's, and run the
lookups from the wheel installed into a folder outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_files() -> dict[str, Path]:
    """{path inside the wheel: file in the checkout} for every manifest, protocol, preset and
    packaged YAML default."""
    out = {
        f"omni_data/manifests/{p.relative_to(REPO / 'manifests').as_posix()}": p
        for p in sorted((REPO / "manifests").rglob("*.yaml"))
    }
    out.update({f"omni_model/presets/{p.name}": p for p in sorted((REPO / "omni_model" / "presets").glob("*.yaml"))})
    out.update({f"omni_data/pipeline/{p.name}": p for p in sorted((REPO / "omni_data" / "pipeline").glob("*.yaml"))})
    return out


def _copy_checkout(dest: Path) -> None:
    """The files git would commit (tracked, and untracked unless ignored), symlinks kept as links."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src, dst = REPO / rel, dest / rel
        if not src.is_symlink() and not src.is_file():
            continue  # deleted in the work tree but still in the index
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the checkout (a build in place would write build/ into it)."""
    root = tmp_path_factory.mktemp("wheel")
    _copy_checkout(root / "src")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(root / "dist"),
        str(root / "src"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    (built,) = (root / "dist").glob("omni-*.whl")
    return built


def test_packaged_manifests_are_the_top_level_folder() -> None:
    """The package's manifests folder is a link to ../manifests, so there is one copy to edit."""
    from omni_data.manifest import list_manifests, manifest_dir
    from omni_data.recompute.protocols import list_protocols, protocol_dir

    link = REPO / "omni_data" / "manifests"
    assert link.is_symlink() and os.readlink(link) == "../manifests"
    if "OMNI_MANIFESTS" not in os.environ and "OMNI_PROTOCOLS" not in os.environ:
        assert manifest_dir().resolve() == (REPO / "manifests").resolve()
        assert protocol_dir().resolve() == (REPO / "manifests" / "protocols").resolve()
        assert list_manifests() == sorted(p.stem for p in (REPO / "manifests").glob("*.yaml"))
        assert list_protocols() == sorted(p.stem for p in (REPO / "manifests" / "protocols").glob("*.yaml"))
    assert "mptrj" in list_manifests() and "mp-pbe-static" in list_protocols()


@pytest.mark.slow
def test_wheel_holds_every_manifest_protocol_and_preset(wheel: Path) -> None:
    expected = data_files()
    assert {
        "omni_data/manifests/mptrj.yaml",
        "omni_data/manifests/protocols/mp-pbe-static.yaml",
        "omni_model/presets/small.yaml",
        "omni_data/pipeline/cluster.yaml",
    } <= set(expected)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        missing = sorted(set(expected) - names)
        assert not missing, f"{wheel.name} lacks {missing}"
        for inside, src in expected.items():
            assert zf.read(inside) == src.read_bytes(), f"{wheel.name}:{inside} differs from {src}"
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(entry_points).decode()
    assert "omni-data = omni_data.cli.main:main" in text and "omni-train = omni_model.cli:main" in text


INSTALLED_CHECK = """
import json, sys
import omni_data, omni_model
from omni_data.manifest import list_manifests, load_manifest
from omni_data.recompute.protocols import list_protocols, load_protocol
from omni_model.config import list_presets, load_config
print(json.dumps({
    "omni_data": omni_data.__file__, "omni_model": omni_model.__file__,
    "manifests": list_manifests(), "protocols": list_protocols(), "presets": list_presets(),
    "mptrj_format": load_manifest("mptrj").format,
    "mp_pbe_engine": load_protocol("mp-pbe-static").engine,
    "small_cutoff": load_config("small").model.cutoff,
}))
"""


@pytest.mark.slow
def test_installed_wheel_finds_its_files_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    """From the wheel installed into a plain folder (not the checkout), run from elsewhere: every
    manifest, protocol and preset is found, and ``omni-data datasets`` lists them all (it crashed
    with ``TypeError: 'int' object is not iterable`` when the folder was missing)."""
    target = tmp_path / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("OMNI_MANIFESTS", "OMNI_PROTOCOLS")}
    env["PYTHONPATH"] = str(target)
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args: str) -> str:
        out = subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True)
        assert out.returncode == 0, f"{args}: {out.stderr}"
        return out.stdout

    found = json.loads(run("-c", INSTALLED_CHECK))
    assert Path(found["omni_data"]).is_relative_to(target) and Path(found["omni_model"]).is_relative_to(target)
    assert found["manifests"] == sorted(p.stem for p in (REPO / "manifests").glob("*.yaml"))
    assert found["protocols"] == sorted(p.stem for p in (REPO / "manifests" / "protocols").glob("*.yaml"))
    assert found["presets"] == sorted(p.stem for p in (REPO / "omni_model" / "presets").glob("*.yaml"))
    assert found["mptrj_format"] == "mptrj_json"  # manifests/mptrj.yaml
    assert found["mp_pbe_engine"] == "vasp"  # inherited from vasp-base.yaml through PARENT
    assert found["small_cutoff"] == 4.5  # omni_model/presets/small.yaml
    listed = json.loads(
        run("-c", "import sys; from omni_data.cli.main import main; sys.exit(main(['datasets', '--json']))")
    )
    assert sorted(row["name"] for row in listed) == found["manifests"]
