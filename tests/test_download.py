"""omni-data download against an HTTP server on loopback: sha256 check, resume with Range."""
from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import pytest

from omni_data.download import DownloadError, fetch_file
from omni_data.manifest import SourceFile

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
