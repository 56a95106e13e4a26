"""omni-data download against an HTTP server on loopback: md5 and sha256 checks, resume with Range,
split/subset selection, the dry run and the one-line mismatch error."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import pytest
import yaml

from omni_data.cli.main import main
from omni_data.download import (
    DownloadError,
    describe_plan,
    fetch_file,
    fetch_manifest,
    where_to_put,
)
from omni_data.manifest import ManifestError, SourceFile, load_manifest, parse_manifest

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with support for 'Range: bytes=N-' (what resume needs)."""

    ranges_seen: list[str] = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        if rng:
            RangeHandler.ranges_seen.append(rng)
            start = int(rng.split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    (root / "data.bin").write_bytes(PAYLOAD)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_sha256_and_resumes(server, tmp_path):
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    entry = SourceFile(name="data.bin", url=f"{server}/data.bin", size_bytes=len(PAYLOAD), sha256=digest)
    dest = tmp_path / "dl"
    dest.mkdir()
    # a previous, interrupted run left the first 300,000 bytes
    (dest / "data.bin.part").write_bytes(PAYLOAD[:300_000])
    RangeHandler.ranges_seen.clear()
    got = fetch_file(entry, dest)
    assert RangeHandler.ranges_seen == ["bytes=300000-"]
    assert got.resumed_from == 300_000 and not got.skipped
    assert (dest / "data.bin").read_bytes() == PAYLOAD
    assert not (dest / "data.bin.part").exists()
    again = fetch_file(entry, dest)
    assert again.skipped and again.sha256 == digest


def test_download_rejects_wrong_sha256_and_keeps_no_final_file(server, tmp_path):
    entry = SourceFile(name="data.bin", url=f"{server}/data.bin", sha256="0" * 64)
    with pytest.raises(DownloadError, match="sha256 .* does not match"):
        fetch_file(entry, tmp_path)
    assert not (tmp_path / "data.bin").exists()


def test_download_names_missing_url(tmp_path):
    with pytest.raises(DownloadError, match="gives no URL"):
        fetch_file(SourceFile(name="x.tar"), tmp_path)


def test_download_404_names_file(server, tmp_path):
    with pytest.raises(DownloadError, match="missing.bin: download from .* failed"):
        fetch_file(SourceFile(name="missing.bin", url=f"{server}/missing.bin"), tmp_path)


# --- md5 or sha256, split/subset selection, the CLI and its dry run (issue 21, items 2 and 4) -----

SMALL = bytes(range(251)) * 1000  # 251,000 bytes


def test_download_checks_md5(server, tmp_path):
    digest = hashlib.md5(PAYLOAD).hexdigest()
    entry = SourceFile(name="data.bin", url=f"{server}/data.bin", size_bytes=len(PAYLOAD), md5=digest.upper())
    got = fetch_file(entry, tmp_path)
    assert (got.algorithm, got.digest) == ("md5", digest)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_md5_mismatch_is_one_line_naming_the_file_and_removes_the_bad_copy(server, tmp_path):
    entry = SourceFile(name="data.bin", url=f"{server}/data.bin", md5="0" * 32)
    with pytest.raises(DownloadError) as info:
        fetch_file(entry, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"data.bin: md5 {hashlib.md5(PAYLOAD).hexdigest()} does not match the manifest's {'0' * 32}"
    )
    assert "run again to fetch it afresh" in message
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.part").exists()


def test_a_release_name_outside_the_folder_is_refused(server, tmp_path):
    with pytest.raises(DownloadError, match="relative path inside the download folder"):
        fetch_file(SourceFile(name="../evil.bin", url=f"{server}/data.bin"), tmp_path / "dl")
    assert not (tmp_path / "evil.bin").exists()


def _release(tmp_path: Path, server: str) -> Path:
    """A manifest whose three release files live on the loopback server (md5, sha256, size only)."""
    srv = tmp_path / "srv"
    files = {
        "train/rattled-300.tar.gz": SMALL,
        "train/rattled-500.tar.gz": SMALL[::-1],
        "val/rattled-300.tar.gz": SMALL[:1000],
    }
    for name, data in files.items():
        (srv / name).parent.mkdir(parents=True, exist_ok=True)
        (srv / name).write_bytes(data)
    data = yaml.safe_load(Path(load_manifest("mad").path).read_text(encoding="utf-8"))
    data.pop("listing")  # these tests fetch the files listed here, not the publisher's list
    data.update(
        name="toyrel",
        dataset="toyrel",
        files=[
            {
                "name": "train/rattled-300.tar.gz",
                "url": f"{server}/train/rattled-300.tar.gz",
                "size_bytes": len(SMALL),
                "md5": hashlib.md5(SMALL).hexdigest(),
                "split": "train",
                "subset": "rattled-300",
            },
            {
                "name": "train/rattled-500.tar.gz",
                "url": f"{server}/train/rattled-500.tar.gz",
                "size_bytes": len(SMALL),
                "sha256": hashlib.sha256(SMALL[::-1]).hexdigest(),
                "split": "train",
                "subset": "rattled-500",
            },
            {
                "name": "val/rattled-300.tar.gz",
                "url": f"{server}/val/rattled-300.tar.gz",
                "size_bytes": 1000,
                "split": "val",
                "subset": "rattled-300",
            },
        ],
    )
    path = tmp_path / "toyrel.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_split_and_subset_pick_exactly_those_files(server, tmp_path):
    m = load_manifest(_release(tmp_path, server))
    dest = tmp_path / "out"
    got = fetch_manifest(m, dest, splits=("train",), subsets=("rattled-300",))
    assert [f.name for f in got] == ["train/rattled-300.tar.gz"] and got[0].algorithm == "md5"
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == ["train/rattled-300.tar.gz"]
    got = fetch_manifest(m, dest, splits=("train",))
    assert [(f.name, f.skipped, f.algorithm) for f in got] == [
        ("train/rattled-300.tar.gz", True, "md5"),
        ("train/rattled-500.tar.gz", False, "sha256"),
    ]
    assert (dest / "train/rattled-500.tar.gz").read_bytes() == SMALL[::-1]
    assert [f.name for f in m.select_files(subsets=("rattled-300",))] == [
        "train/rattled-300.tar.gz",
        "val/rattled-300.tar.gz",
    ]
    with pytest.raises(ManifestError, match=r"no split 'test' in manifest 'toyrel' \(its splits: train, val\)"):
        m.select_files(splits=("test",))
    with pytest.raises(ManifestError, match=r"no subset 'rattled-1000' .* \(its subsets: rattled-300, rattled-500\)"):
        m.select_files(subsets=("rattled-1000",))


def test_cli_download_dry_run_lists_files_and_total_then_fetches(server, tmp_path, capsys):
    path = _release(tmp_path, server)
    dest = tmp_path / "out"
    assert main(["download", str(path), "--split", "train", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[:2]] == [
        ["train/rattled-300.tar.gz", "train", "rattled-300"],
        ["train/rattled-500.tar.gz", "train", "rattled-500"],
    ]
    assert "251.0 kB" in lines[0] and "md5" in lines[0] and "sha256" in lines[1]
    assert lines[2] == "total: 2 files, 502.0 kB"
    assert not dest.exists()
    assert (
        main(["download", str(path), "--subset", "rattled-300", "--split", "val", "--out", str(dest), "--no-progress"])
        == 0
    )
    assert (dest / "val/rattled-300.tar.gz").read_bytes() == SMALL[:1000]
    assert not (dest / "train").exists()
    capsys.readouterr()
    assert main(["download", str(path), "--split", "val", "--dry-run", "--out", str(dest)]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("(present)")


def test_cli_download_mismatch_is_one_line_exit_1(server, tmp_path, capsys):
    path = _release(tmp_path, server)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["files"][0]["md5"] = "f" * 32
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert (
        main(
            [
                "download",
                str(path),
                "--subset",
                "rattled-300",
                "--split",
                "train",
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("omni-data download: error: train/rattled-300.tar.gz: md5 ")


def test_describe_plan_counts_unknown_sizes():
    files = [SourceFile(name="a", url="u", size_bytes=1_500_000_000, sha256="x"), SourceFile(name="b", url="v")]
    lines = describe_plan(files)
    assert lines[-1] == "total: 2 files, 1.5 GB (+ 1 file of unknown size)"
    assert "no checksum" in lines[1] and "size unknown" in lines[1]


def test_where_to_put_names_folder_and_download_command(tmp_path, monkeypatch):
    data = yaml.safe_load(Path(load_manifest("mad").path).read_text(encoding="utf-8"))
    data.pop("listing")  # these tests fetch the files listed here, not the publisher's list
    data["files"] = [{"name": "mad.xyz", "url": "https://example.org/mad.xyz"}]
    m = parse_manifest(data, "mad.yaml")
    monkeypatch.setenv("OMNI_DATA_ROOT", str(tmp_path))
    assert where_to_put(m) == (
        f"no local copy of mad: put the release files under {tmp_path / 'mad'} or run "
        f"`omni-data download mad --out {tmp_path / 'mad'}`, then "
        f"`omni-data ingest mad --source {tmp_path / 'mad'}`"
    )
    monkeypatch.delenv("OMNI_DATA_ROOT")
    data.update(files=[], url="https://example.org/mad")
    m = parse_manifest(data, "mad.yaml")
    assert where_to_put(m) == (
        "no local copy of mad: fetch its release files from https://example.org/mad "
        "into ./mad, then `omni-data ingest mad --source ./mad`"
    )


# --- rounded sizes (size_approx): shown as ~N, summed as approximate, checked within 2x only -------------------


def test_describe_plan_marks_rounded_sizes_and_sums_them_as_approximate():
    files = [
        SourceFile(name="a", url="u", size_bytes=1_500_000_000, md5="0" * 32),
        SourceFile(name="b", url="v", size_approx="21 GB"),
        SourceFile(name="c", url="w", size_bytes=1_000_000_000, size_approx="9 GB"),  # the exact size wins
        SourceFile(name="d", url="x"),
    ]
    lines = describe_plan(files)
    assert lines[0].split()[3:5] == ["1.5", "GB"]
    assert lines[1].split()[3:5] == ["~21", "GB"]
    assert lines[2].split()[3:5] == ["1.0", "GB"]
    assert "size unknown" in lines[3]
    assert lines[-1] == "total: 4 files, ~23.5 GB (1 size approximate, + 1 file of unknown size)"


def test_rounded_sizes_in_binary_units_are_read_as_such():
    assert SourceFile(name="m", size_approx="232 MiB").approx_bytes == 232 * 1024**2
    assert SourceFile(name="g", size_approx="7.1 GB").approx_bytes == 7_100_000_000
    assert SourceFile(name="n").approx_bytes is None


@pytest.mark.parametrize("bad", ["21GB", "21 gigabytes", "about 21 GB", "21 G"])
def test_a_malformed_rounded_size_is_a_manifest_error_naming_the_key(bad):
    data = yaml.safe_load(Path(load_manifest("mad").path).read_text(encoding="utf-8"))
    data.pop("listing")  # these tests fetch the files listed here, not the publisher's list
    data["files"] = [{"name": "mad.xyz", "url": "https://example.org/mad.xyz", "size_approx": bad}]
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, "mad.yaml")
    message = str(info.value)
    assert message.startswith("mad.yaml") and "size_approx" in message
    assert "must be a number, one space and a unit" in message and repr(bad) in message


def test_a_rounded_size_refuses_only_a_file_far_from_it(server, tmp_path):
    """PAYLOAD is 1,048,576 B: within 2x of "1.1 MB" and "600 kB" (accepted), not of "9 GB" or "500 kB"."""
    digest = hashlib.md5(PAYLOAD).hexdigest()
    for approx in ("1.1 MB", "600 kB", "2 MB"):
        entry = SourceFile(name="data.bin", url=f"{server}/data.bin", size_approx=approx, md5=digest)
        got = fetch_file(entry, tmp_path / approx.replace(" ", ""))
        assert (got.bytes, got.algorithm, got.digest, got.skipped) == (len(PAYLOAD), "md5", digest, False)
    for approx in ("9 GB", "500 kB"):
        entry = SourceFile(name="data.bin", url=f"{server}/data.bin", size_approx=approx)
        with pytest.raises(DownloadError) as info:
            fetch_file(entry, tmp_path / "far")
        assert str(info.value).startswith(
            f"data.bin: size 1.0 MB is not within a factor of 2 of the publisher's ~{approx}: not the release file"
        )
        assert not (tmp_path / "far" / "data.bin").exists() and not (tmp_path / "far" / "data.bin.part").exists()


def test_cli_dry_run_on_omat24_shows_the_published_rounded_sizes(capsys):
    assert main(["download", "omat24", "--split", "val", "--subset", "rattled-300", "rattled-500", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:5] for line in lines[:2]] == [
        ["omat/val/rattled-500.tar.gz", "val", "rattled-500", "~135", "MB"],
        ["omat/val/rattled-300.tar.gz", "val", "rattled-300", "~122", "MB"],
    ]
    assert "no checksum" in lines[0]
    assert lines[2] == "total: 2 files, ~257.0 MB (2 sizes approximate)"


def test_cli_progress_total_counts_a_rounded_size(server, tmp_path, capsys):
    data = yaml.safe_load(Path(load_manifest("mad").path).read_text(encoding="utf-8"))
    data.pop("listing")  # these tests fetch the files listed here, not the publisher's list
    digest = hashlib.md5(PAYLOAD).hexdigest()
    data.update(
        name="approx", dataset="approx", files=[{"name": "data.bin", "url": f"{server}/data.bin", "md5": digest}]
    )
    data["files"][0]["size_approx"] = "1 MiB"
    path = tmp_path / "approx.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert main(["download", str(path), "--out", str(tmp_path / "o")]) == 0
    out, err = capsys.readouterr()
    assert "/1.05M" in err  # the bar's total is the rounded size: 1 MiB = 1,048,576 B
    assert out.strip().endswith(f"1.0 MB  md5 {digest}  (downloaded)")
