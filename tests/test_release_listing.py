"""File lists read from the publishers' APIs (omni_data.release_listing), against a loopback server
that answers in each API's documented JSON layout:

- figshare v2 ``GET /v2/articles/{id}/versions/{v}``: ``files`` of ``{id, name, size, is_link_only,
  download_url, supplied_md5, computed_md5}`` (docs.figshare.com, "Public Articles");
- InvenioRDM ``GET /api/records/{id}/files``: ``entries`` of ``{key, size, checksum: "md5:<hex>",
  links: {content}}`` (inveniordm.docs.cern.ch, "REST API: Draft/Record files");
- Google Cloud Storage JSON API ``GET /storage/v1/b/{bucket}/o?prefix=``: ``items`` of ``{name,
  size (a string), md5Hash (base64)}`` and ``nextPageToken`` (cloud.google.com/storage/docs/json_api/v1/objects/list).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import urllib.parse
from pathlib import Path

import pytest
import yaml

from omni_data.cli.main import main
from omni_data.manifest import ManifestError, load_manifest, parse_manifest
from omni_data.release_listing import LOCK_NAME, ListingError, listing_url, read_listing, release_files

R2SCAN = b'{"mp-1": {"mp-1-0-0": {}}}' * 2000
TRAIN, VAL, TEST = b"train\n" * 3000, b"val\n" * 500, b"test\n" * 500


class Api(http.server.BaseHTTPRequestHandler):
    """Routes: ``routes[path] = (status, bytes)``; a path without query selects by exact path+query first."""

    routes: dict[str, tuple[int, bytes]] = {}
    seen: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        Api.seen.append(self.path)
        status, body = Api.routes.get(self.path) or Api.routes.get(self.path.split("?")[0]) or (404, b"no")
        rng = self.headers.get("Range")
        if status == 200 and rng:
            start = int(rng.split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def api():
    Api.routes, Api.seen = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _copy(name: str, tmp_path: Path, **listing) -> Path:
    """The packaged manifest ``name`` with its ``listing`` keys replaced (``site`` -> the loopback server)."""
    data = yaml.safe_load(Path(load_manifest(name).path).read_text(encoding="utf-8"))
    data["listing"].update(listing)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _figshare(api: str, md5: str | None = None) -> None:
    Api.routes["/v2/articles/28245650/versions/2"] = (
        200,
        json.dumps(
            {
                "id": 28245650,
                "version": 2,
                "files": [
                    {
                        "id": 51757091,
                        "name": "MPr2SCAN.json",
                        "size": len(R2SCAN),
                        "is_link_only": False,
                        "download_url": f"{api}/ndownloader/files/51757091",
                        "supplied_md5": "",
                        "computed_md5": md5 or hashlib.md5(R2SCAN).hexdigest(),
                    }
                ],
            }
        ).encode(),
    )
    Api.routes["/ndownloader/files/51757091"] = (200, R2SCAN)


def test_the_figshare_list_is_read_pinned_and_reused_when_the_api_is_gone(api, tmp_path, capsys):
    _figshare(api)
    path, out = _copy("mp_r2scan", tmp_path, site=api), tmp_path / "r2scan"
    assert main(["download", str(path), "--out", str(out), "--no-progress"]) == 0
    assert (out / "MPr2SCAN.json").read_bytes() == R2SCAN
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == (
        f"files from the publisher's list {api}/v2/articles/28245650/versions/2, pinned in {out / LOCK_NAME}"
    )
    assert f"md5 {hashlib.md5(R2SCAN).hexdigest()}  (downloaded)" in printed
    lock = json.loads((out / LOCK_NAME).read_text(encoding="utf-8"))
    assert lock["listed_from"] == f"{api}/v2/articles/28245650/versions/2"
    assert [(f["name"], f["size_bytes"], f["split"]) for f in lock["files"]] == [("MPr2SCAN.json", len(R2SCAN), "all")]
    # a resumed run: the API is gone, the pinned list is used, the .part is completed with a Range request
    (out / "MPr2SCAN.json").rename(out / "MPr2SCAN.json.part")
    with open(out / "MPr2SCAN.json.part", "r+b") as fh:
        fh.truncate(1000)
    del Api.routes["/v2/articles/28245650/versions/2"]
    Api.seen.clear()
    assert main(["download", str(path), "--out", str(out), "--no-progress"]) == 0
    assert Api.seen == ["/ndownloader/files/51757091"]
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == f"files from pinned list {out / LOCK_NAME}" and "(resumed at 1000 B)" in printed
    assert (out / "MPr2SCAN.json").read_bytes() == R2SCAN
    # the ingest glob (*.json) does not take the pinned list for data
    assert sorted(p.name for p in out.glob("*.json")) == ["MPr2SCAN.json"]


def test_a_figshare_md5_the_download_does_not_match_is_one_line_naming_the_file(api, tmp_path, capsys):
    _figshare(api, md5="0" * 32)
    path = _copy("mp_r2scan", tmp_path, site=api)
    assert main(["download", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"omni-data download: error: MPr2SCAN.json: md5 {hashlib.md5(R2SCAN).hexdigest()} does not match "
    )
    assert not (tmp_path / "o" / "MPr2SCAN.json").exists()


def _invenio(api: str, extra: dict | None = None) -> None:
    base = f"{api}/api/records/xdsbt-a3r17/files"
    entries = [
        {"key": name, "size": len(data), "checksum": f"md5:{hashlib.md5(data).hexdigest()}"}
        | {"links": {"content": f"{base}/{name}/content"}}
        for name, data in (("mad-train.xyz", TRAIN), ("mad-val.xyz", VAL), ("mad-test.xyz", TEST))
    ]
    entries.append({"key": "README.txt", "size": 3, "checksum": "md5:" + "1" * 32, "links": {}})
    if extra:
        entries[0].update(extra)
    Api.routes["/api/records/xdsbt-a3r17/files"] = (200, json.dumps({"enabled": True, "entries": entries}).encode())
    for name, data in (("mad-train.xyz", TRAIN), ("mad-val.xyz", VAL), ("mad-test.xyz", TEST)):
        Api.routes[f"/api/records/xdsbt-a3r17/files/{name}/content"] = (200, data)


def test_invenio_sizes_and_md5_join_the_manifests_files_and_split(api, tmp_path, capsys):
    _invenio(api)
    m = load_manifest(_copy("mad", tmp_path, site=api))
    files, origin = release_files(m, tmp_path / "mad")
    assert origin == f"the publisher's list {api}/api/records/xdsbt-a3r17/files"
    assert [(f.name, f.split, f.size_bytes, f.md5, f.size_approx) for f in files] == [
        ("mad-train.xyz", "train", len(TRAIN), hashlib.md5(TRAIN).hexdigest(), "232 MiB"),
        ("mad-val.xyz", "val", len(VAL), hashlib.md5(VAL).hexdigest(), "29 MiB"),
        ("mad-test.xyz", "test", len(TEST), hashlib.md5(TEST).hexdigest(), "29 MiB"),
    ]  # README.txt is not in include: ["mad-*.xyz"]; the manifest's own URLs are kept
    assert files[0].url == "https://archive.materialscloud.org/records/xdsbt-a3r17/files/mad-train.xyz?download=1"
    assert (tmp_path / "mad" / LOCK_NAME).is_file()
    # --split works on the listed files; a dry run shows where the list came from and pins nothing
    assert main(["download", str(tmp_path / "mad.yaml"), "--split", "val", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"files from the publisher's list {api}/api/records/xdsbt-a3r17/files"
    assert out[1].split()[:4] == ["mad-val.xyz", "val", "-", "2.0"] and "md5" in out[1]
    assert out[2] == "total: 1 file, 2.0 kB"


def test_a_checksum_the_api_contradicts_is_an_error_naming_the_file():
    data = yaml.safe_load(Path(load_manifest("mad").path).read_text(encoding="utf-8"))
    data["files"][0]["md5"] = "a" * 32
    m = parse_manifest(data, "mad.yaml")
    payload = {"entries": [{"key": "mad-train.xyz", "size": 5, "checksum": "md5:" + "b" * 32}]}
    with pytest.raises(ListingError, match=r"mad-train.xyz: the publisher's list gives md5 b{32}, .* pins a{32}"):
        release_files(m, get_json=lambda url: payload)


def _qcml_module():
    """tests/readers/test_qcml.py (its TFRecord writer), imported by path as the layout tests do."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_listing_qcml", Path(__file__).parent / "readers" / "test_qcml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gcs_pages(api: str, tmp_path: Path) -> dict[str, bytes]:
    qcml = _qcml_module()
    _molecules, _write = qcml._molecules, qcml._write
    prefix = "tfds/qcml/dft_force_field/1.0.0/"
    mols = _molecules(7, force_scale=0.05)
    blobs: dict[str, bytes] = {"dataset_info.json": b"{}", "features.json": b"{}"}
    for k, chunk in enumerate([mols[:4], mols[4:]]):
        shard = tmp_path / f"shard{k}"
        _write(shard, chunk)
        blobs[f"qcml-full.tfrecord-{k:05d}-of-00002"] = shard.read_bytes()
    items = [
        {
            "name": prefix + name,
            "size": str(len(data)),
            "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
        }
        for name, data in blobs.items()
    ]
    del items[-1]["md5Hash"]  # a composite object has a crc32c but no md5Hash
    query = urllib.parse.urlencode({"prefix": prefix, "fields": "items(name,size,md5Hash),nextPageToken"})
    first = f"/storage/v1/b/qcml-datasets/o?{query}"
    Api.routes[first] = (200, json.dumps({"items": items[:2], "nextPageToken": "tok/2"}).encode())
    second = f"{first}&{urllib.parse.urlencode({'pageToken': 'tok/2'})}"
    Api.routes[second] = (200, json.dumps({"kind": "storage#objects", "items": items[2:]}).encode())
    for name, data in blobs.items():
        Api.routes[f"/qcml-datasets/{urllib.parse.quote(prefix + name)}"] = (200, data)
    return blobs


def test_a_paged_gcs_bucket_lists_every_object_and_ingests_end_to_end(api, tmp_path, capsys):
    blobs = _gcs_pages(api, tmp_path)
    path, out = _copy("qcml", tmp_path, site=api), tmp_path / "qcml"
    files = read_listing(load_manifest(path).listing)
    assert [(f.name, f.size_bytes) for f in files] == [(n, len(d)) for n, d in blobs.items()]
    assert [f.md5 for f in files] == [hashlib.md5(d).hexdigest() for d in blobs.values()][:-1] + [None]
    assert main(["download", str(path), "--out", str(out), "--no-progress"]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_NAME} == blobs
    capsys.readouterr()
    # the downloaded shards ingest: the qcml reader finds them, one is_outlier record is quarantined
    assert main(["ingest", str(path), "--source", str(out), "--out", str(tmp_path / "store"), "--workers", "1"]) == 0
    from omni_data.store import Store

    store = Store(tmp_path / "store")
    assert sorted(r.id for r in store) == [f"qcml:{i:08x}deadbeef" for i in (0, 1, 2, 3, 5, 6)]
    assert store.quarantine().column("reason").to_pylist() == ["filter:is_outlier"]


def test_an_unreachable_api_is_one_line_naming_the_url_and_a_dry_run_falls_back_to_listed_files(tmp_path, capsys):
    dead = "http://127.0.0.1:9"  # discard port: connection refused
    assert main(["download", str(_copy("qcml", tmp_path, site=dead)), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        f"omni-data download: error: manifest qcml: could not read the publisher's file list: "
        f"{dead}/storage/v1/b/qcml-datasets/o?prefix=tfds%2Fqcml"
    )
    assert main(["download", str(_copy("mad", tmp_path, site=dead)), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("files from the manifest (the publisher's list could not be read: ")
    assert [line.split()[0] for line in out[1:4]] == ["mad-train.xyz", "mad-val.xyz", "mad-test.xyz"]


def test_an_http_error_or_an_unexpected_layout_names_the_url(api):
    m = load_manifest("mp_r2scan")
    listing = parse_manifest(
        {
            **yaml.safe_load(Path(m.path).read_text(encoding="utf-8")),
            "listing": {"api": "figshare", "record": "1", "site": api},
        },
        "x.yaml",
    ).listing
    with pytest.raises(ListingError, match=rf"^{api}/v2/articles/1/files\?page_size=1000: HTTP 404"):
        read_listing(listing)
    with pytest.raises(ListingError, match="a file entry lacks 'download_url'"):
        read_listing(listing, get_json=lambda url: [{"name": "a", "size": 1}])
    with pytest.raises(ListingError, match="the publisher lists no files"):
        read_listing(listing, get_json=lambda url: [])
    assert listing_url(listing) == f"{api}/v2/articles/1/files?page_size=1000"


@pytest.mark.parametrize(
    "listing, problem",
    [
        ({"api": "dropbox", "record": "1"}, "key 'listing.api': 'dropbox' is not a listing API"),
        ({"api": "gcs"}, "key 'listing.bucket': required for api 'gcs'"),
        ({"api": "figshare"}, "key 'listing.record': required for api 'figshare'"),
        ({"api": "invenio", "record": "x", "version": 2}, "key 'listing.version': only a figshare article"),
        ({"api": "gcs", "bucket": "b", "split": "dev"}, "key 'listing.split': must be one of"),
        ({"api": "gcs", "bucket": "b", "bukcet": "c"}, "unknown key 'listing.bukcet' (did you mean 'bucket'?"),
    ],
)
def test_a_bad_listing_is_a_manifest_error_naming_the_key(listing, problem):
    data = yaml.safe_load(Path(load_manifest("qcml").path).read_text(encoding="utf-8"))
    data["listing"] = listing
    with pytest.raises(ManifestError) as exc:
        parse_manifest(data, "qcml.yaml")
    assert problem in str(exc.value)


MATPES = b'{"matpes_id": "matpes-1"}\n' * 4000


def _s3(api: str) -> None:
    """Two ListObjectsV2 pages (the AWS S3 API reference's XML layout); the ETag is an md5 here but not used."""
    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'

    def page(keys: list[tuple[str, int]], token: str | None) -> bytes:
        contents = "".join(
            f"<Contents><Key>{k}</Key><LastModified>2025-03-06T00:00:00.000Z</LastModified>"
            f'<ETag>"{hashlib.md5(b"x").hexdigest()}"</ETag><Size>{n}</Size><StorageClass>STANDARD</StorageClass></Contents>'
            for k, n in keys
        )
        tail = (
            f"<IsTruncated>true</IsTruncated><NextContinuationToken>{token}</NextContinuationToken>"
            if token
            else "<IsTruncated>false</IsTruncated>"
        )
        return f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult {ns}><Name>materialsproject-contribs</Name>{contents}{tail}</ListBucketResult>'.encode()

    first = "/materialsproject-contribs?list-type=2&prefix=MatPES_2025_1%2F"
    Api.routes[first] = (200, page([("MatPES_2025_1/MatPES-PBE-2025.1.json.gz", len(MATPES))], "1/abc="))
    Api.routes[f"{first}&continuation-token=1%2Fabc%3D"] = (
        200,
        page([("MatPES_2025_1/MatPES-R2SCAN-2025.1.json.gz", 99), ("MatPES_2025_1/README.md", 5)], None),
    )
    Api.routes["/materialsproject-contribs/MatPES_2025_1/MatPES-PBE-2025.1.json.gz"] = (200, MATPES)


def test_an_s3_listing_gives_the_exact_size_that_the_download_then_checks(api, tmp_path, capsys):
    _s3(api)
    data = yaml.safe_load(Path(load_manifest("matpes_pbe").path).read_text(encoding="utf-8"))
    data["listing"]["site"] = api
    data["files"][0]["url"] = f"{api}/materialsproject-contribs/MatPES_2025_1/MatPES-PBE-2025.1.json.gz"
    path = tmp_path / "matpes_pbe.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    m = load_manifest(path)
    files = read_listing(m.listing)  # both pages read, then include keeps the PBE file only
    assert [(f.name, f.size_bytes, f.md5) for f in files] == [("MatPES-PBE-2025.1.json.gz", len(MATPES), None)]
    assert main(["download", str(path), "--out", str(tmp_path / "pbe"), "--no-progress"]) == 0
    assert (tmp_path / "pbe" / "MatPES-PBE-2025.1.json.gz").read_bytes() == MATPES
    # a server that sends fewer bytes than the listed size: the size check names the file
    Api.routes["/materialsproject-contribs/MatPES_2025_1/MatPES-PBE-2025.1.json.gz"] = (200, MATPES[:-10])
    assert main(["download", str(path), "--out", str(tmp_path / "short"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"MatPES-PBE-2025.1.json.gz: size {len(MATPES) - 10} B does not match the manifest's {len(MATPES)} B" in err


def test_an_xml_listing_with_a_dtd_is_refused(api):
    Api.routes["/b?list-type=2&prefix="] = (
        200,
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ListBucketResult>&a;</ListBucketResult>',
    )
    listing = parse_manifest(
        {
            **yaml.safe_load(Path(load_manifest("qcml").path).read_text(encoding="utf-8")),
            "listing": {"api": "s3", "bucket": "b", "site": api},
        },
        "x.yaml",
    ).listing
    with pytest.raises(ListingError, match="declares a DTD; refused"):
        read_listing(listing)


def test_refresh_reads_the_list_again_and_a_dry_run_pins_nothing(tmp_path):
    m = load_manifest("mp_r2scan")
    calls = []

    def api(size: int):
        def get_json(url: str):
            calls.append(url)
            return {"files": [{"name": "MPr2SCAN.json", "size": size, "download_url": "u", "computed_md5": "c" * 32}]}

        return get_json

    files, _ = release_files(m, tmp_path, get_json=api(10), pin=False)  # what a dry run does
    assert files[0].size_bytes == 10 and not (tmp_path / LOCK_NAME).exists()
    release_files(m, tmp_path, get_json=api(10))
    files, origin = release_files(m, tmp_path, get_json=api(20))
    assert (files[0].size_bytes, origin, len(calls)) == (10, f"pinned list {tmp_path / LOCK_NAME}", 2)
    files, _ = release_files(m, tmp_path, refresh=True, get_json=api(20))
    assert files[0].size_bytes == 20 and len(calls) == 3
    assert json.loads((tmp_path / LOCK_NAME).read_text(encoding="utf-8"))["files"][0]["size_bytes"] == 20
    (tmp_path / LOCK_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(ListingError, match="unreadable pinned file list .* delete it to read the list afresh"):
        release_files(m, tmp_path)
