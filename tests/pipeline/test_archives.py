"""Ingest straight from a release archive (tar.gz of .aselmdb files, as fairchem ships them);
an archive with a member escaping the target is refused and nothing is ingested."""
from __future__ import annotations

import io
import tarfile

from ase_db_backends.aselmdb import LMDBDatabase

from omni_data.cli.main import main
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
    code = main(["ingest", "omol25", "--source", str(archive), "--out", str(tmp_path / "st"), "--no-cluster", "--no-progress"])
    assert code == 1
    assert "outside" in capsys.readouterr().err
    assert not (tmp_path.parent / "escaped.aselmdb").exists() and not (tmp_path / "escaped.aselmdb").exists()
