"""Ingest straight from a release archive (tar.gz of .aselmdb files, as fairchem ships them);
an archive with a member escaping the target, or holding any link, is refused with a one-line
error and nothing is written outside the store."""

from __future__ import annotations

import io
import tarfile

from ase_db_backends.aselmdb import LMDBDatabase

from omni_data.cli.main import main
from omni_data.pipeline.archives import stage_source
from omni_data.store import Store


def test_ingest_from_tar_gz_equals_ingest_from_folder(tmp_path, shared_data):
    src = shared_data / "aselmdb"
    archive = tmp_path / "omol_samples.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for f in sorted(src.glob("*.aselmdb")):
            tar.add(f, arcname=f"train_4M/{f.name}")
    base = ["--no-cluster", "--no-progress"]
    assert main(["ingest", "omol25", "--source", str(archive), "--out", str(tmp_path / "a"), *base]) == 0
    assert main(["ingest", "omol25", "--source", str(archive), "--out", str(tmp_path / "a"), *base]) == 0  # resumes
    expected = 0
    for f in src.glob("*.aselmdb"):
        with LMDBDatabase(f, readonly=True) as db:
            expected += len(db.ids)
    store = Store(tmp_path / "a")
    assert len(store) == expected == 180
    assert (tmp_path / "a" / ".sources" / "omol_samples" / "omol_samples" / "train_4M").is_dir()
    assert len({r.id for r in store}) == 180


def test_archive_with_escaping_member_is_refused(tmp_path, capsys):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"pwned"
        info = tarfile.TarInfo("../../escaped.aselmdb")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    code = main(
        ["ingest", "omol25", "--source", str(archive), "--out", str(tmp_path / "st"), "--no-cluster", "--no-progress"]
    )
    assert code == 1
    assert "outside" in capsys.readouterr().err
    assert not (tmp_path.parent / "escaped.aselmdb").exists() and not (tmp_path / "escaped.aselmdb").exists()


def _chain_archive(path, payload_name, secret=None):
    """l1 -> .., l2 -> l1/.., ... (each link's text inside the root), then a member through the chain."""
    with tarfile.open(path, "w:gz") as tar:
        depth = 40 if secret else 2
        for k in range(1, depth + 1):
            info = tarfile.TarInfo(f"sub/l{k}")
            info.type, info.linkname = tarfile.SYMTYPE, ".." if k == 1 else f"l{k - 1}/.."
            tar.addfile(info)
        info = tarfile.TarInfo(payload_name)
        if secret:
            info.type, info.linkname = tarfile.LNKTYPE, f"sub/l{depth}{secret}"
            tar.addfile(info)
        else:
            data = b"1\nLi\nLi 0 0 0\n"
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _ingest_cli(archive, store, capsys):
    code = main(
        [
            "ingest",
            str(archive),
            "--source",
            str(archive),
            "--out",
            str(store),
            "--format",
            "extxyz",
            "--dataset",
            "x",
            "--task",
            "t",
            "--no-cluster",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if not line.startswith("ingest ")]


def test_chained_symlink_archive_refused_through_the_cli(tmp_path, capsys):
    archive = _chain_archive(tmp_path / "X.tar.gz", "sub/l2/escaped.xyz")
    store = tmp_path / "deep" / "STORE"
    code, lines = _ingest_cli(archive, store, capsys)
    assert code == 1
    assert len(lines) == 1 and "member 'sub/l1' is a symbolic link to '..'" in lines[0] and "X.tar.gz" in lines[0]
    assert not any(p.name == "escaped.xyz" for p in tmp_path.rglob("*"))
    assert not (store / ".sources").exists()  # no half-extracted leftovers either


def test_hard_link_archive_cannot_copy_a_file_into_the_store(tmp_path, capsys):
    secret = tmp_path / "hostname"
    secret.write_text("secret-host-name\n")
    archive = _chain_archive(tmp_path / "X.tar.gz", "stolen.xyz", secret=secret)
    store = tmp_path / "STORE"
    code, lines = _ingest_cli(archive, store, capsys)
    assert code == 1 and len(lines) == 1 and "is a symbolic link" in lines[0]
    assert not [p for p in store.rglob("*") if p.is_file() and b"secret-host-name" in p.read_bytes()]


def test_archive_named_dot_dot_stays_inside_the_store(tmp_path):
    archive = tmp_path / "arc" / "...tar.gz"  # its stem ".." must not name a folder above .sources
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        data = b"1\nLi\nLi 0 0 0\n"
        info = tarfile.TarInfo("a.xyz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    keep = tmp_path / "home" / "keep.txt"
    keep.parent.mkdir()
    keep.write_text("mine")
    store = tmp_path / "home" / "STORE"
    staged = stage_source(archive, store, "extxyz")
    assert keep.read_text() == "mine"
    assert staged.parent == store / ".sources" and staged.name.startswith("id_")
    assert [p.name for p in staged.rglob("*.xyz")] == ["a.xyz"]
