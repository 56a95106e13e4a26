"""Read a release's file list from its publisher's API, and pin what was read beside the download.

Some publishers' file lists could not be copied into a manifest (MP-r2SCAN's figshare record, the
QCML TFDS bucket, the exact sizes and md5 of MAD on the Materials Cloud Archive). For those the
manifest names the API (``listing:``, ``omni_data.manifest.Listing``) and ``omni-data download``
reads the list when it runs. Three APIs, each read through its documented public JSON:

- ``figshare``: ``GET /v2/articles/{id}/versions/{v}`` (or ``/v2/articles/{id}/files``), whose
  ``files`` entries give ``name``, ``size``, ``download_url`` and ``computed_md5``;
- ``invenio`` (Zenodo, Materials Cloud Archive: InvenioRDM): ``GET /api/records/{id}/files``,
  whose ``entries`` give ``key``, ``size``, ``checksum`` (``md5:<hex>``) and ``links.content``;
- ``gcs`` (a public Google Cloud Storage bucket): ``GET /storage/v1/b/{bucket}/o?prefix=P``, whose
  ``items`` give ``name``, ``size`` (a string) and ``md5Hash`` (base64; absent on composite
  objects), paged with ``nextPageToken``; objects download from ``{site}/{bucket}/{name}``;
- ``s3`` (a public AWS bucket): ``GET /{bucket}?list-type=2&prefix=P`` (ListObjectsV2), whose XML
  ``Contents`` give ``Key`` and ``Size``, paged with ``NextContinuationToken``; objects download from
  ``{site}/{bucket}/{key}``. The ``ETag`` is not taken for an md5: AWS documents that it is one only
  for single-part uploads without KMS encryption, so only the exact size is checked.

The files read are merged with those the manifest lists (the manifest's split, subset and
checksums stay; a checksum the API contradicts is an error: the release changed), and written to
``DEST/.omni-listing.lock`` (write then rename), so a resumed download fetches exactly the files
the first run planned, with no network call for the list.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import fnmatch
import json
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omni_data.manifest import Listing, Manifest, SourceFile

__all__ = ["ListingError", "LOCK_NAME", "listing_url", "read_listing", "release_files", "merge_files"]

LOCK_NAME = ".omni-listing.lock"
"""The pinned file list in the download folder (JSON; hidden, and no reader's glob matches it)."""
MAX_PAGES = 1000
GetJson = Callable[[str], Any]


class ListingError(RuntimeError):
    """The publisher's file list could not be read or contradicts the manifest; names the URL."""


def listing_url(listing: Listing) -> str:
    """The first API URL that lists ``listing``'s files."""
    base = listing.base
    if listing.api == "figshare":
        article = urllib.parse.quote(listing.record, safe="")
        if listing.version is not None:
            return f"{base}/v2/articles/{article}/versions/{listing.version}"
        return f"{base}/v2/articles/{article}/files?page_size=1000"
    if listing.api == "invenio":
        return f"{base}/api/records/{urllib.parse.quote(listing.record, safe='')}/files"
    if listing.api == "s3":
        query = urllib.parse.urlencode({"list-type": "2", "prefix": listing.prefix})
        return f"{base}/{urllib.parse.quote(listing.bucket, safe='')}?{query}"
    query = urllib.parse.urlencode({"prefix": listing.prefix, "fields": "items(name,size,md5Hash),nextPageToken"})
    return f"{base}/storage/v1/b/{urllib.parse.quote(listing.bucket, safe='')}/o?{query}"


def _get_json(url: str, timeout: float = 60.0) -> Any:
    """The JSON (or, for an S3 listing, the parsed XML) at ``url``."""
    request = urllib.request.Request(url, headers={"User-Agent": "omni-data", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    if body.lstrip().startswith(b"<"):
        return _s3_xml(body)
    return json.loads(body.decode("utf-8"))


S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _s3_xml(body: bytes) -> dict[str, Any]:
    """A ListObjectsV2 result as ``{"items": [{"name", "size"}], "next": token or None}``; a document
    with a DTD is refused (no entity expansion from a server's answer)."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ValueError("the XML listing declares a DTD; refused")
    root = ET.fromstring(body)
    if root.tag != f"{S3_NS}ListBucketResult":
        raise ValueError(f"not an S3 ListBucketResult (root element {root.tag})")
    items = [
        {"name": c.findtext(f"{S3_NS}Key"), "size": c.findtext(f"{S3_NS}Size")}
        for c in root.findall(f"{S3_NS}Contents")
    ]
    truncated = root.findtext(f"{S3_NS}IsTruncated") == "true"
    return {"items": items, "next": root.findtext(f"{S3_NS}NextContinuationToken") if truncated else None}


def _md5_hex(value: Any) -> str | None:
    """A 32-digit lower-case md5, or None for an empty or malformed value."""
    text = str(value or "").strip().lower()
    return text if len(text) == 32 and all(c in "0123456789abcdef" for c in text) else None


def _figshare(payload: Any, listing: Listing) -> list[SourceFile]:
    entries = payload.get("files") if isinstance(payload, dict) else payload
    if not isinstance(entries, list):
        raise ValueError("no 'files' list in the response")
    out = []
    for e in entries:
        md5 = _md5_hex(e.get("computed_md5")) or _md5_hex(e.get("supplied_md5"))
        size = e.get("size")
        out.append(
            SourceFile(
                name=str(e["name"]),
                url=str(e["download_url"]),
                size_bytes=int(size) if size is not None and not e.get("is_link_only") else None,
                md5=md5,
                split=listing.split,
            )
        )
    return out


def _invenio(payload: Any, listing: Listing) -> list[SourceFile]:
    entries = payload.get("entries") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise ValueError("no 'entries' list in the response")
    out = []
    for e in entries:
        key = str(e["key"])
        algorithm, _, value = str(e.get("checksum") or "").partition(":")
        url = (e.get("links") or {}).get("content") or (
            f"{listing.base}/api/records/{urllib.parse.quote(listing.record, safe='')}/files/"
            f"{urllib.parse.quote(key, safe='')}/content"
        )
        size = e.get("size")
        out.append(
            SourceFile(
                name=key,
                url=str(url),
                size_bytes=int(size) if size is not None else None,
                md5=_md5_hex(value) if algorithm.lower() == "md5" else None,
                split=listing.split,
            )
        )
    return out


def _bucket_page(payload: Any, listing: Listing) -> list[SourceFile]:
    """One page of a gcs (JSON) or s3 (parsed XML) object listing as release files."""
    if not isinstance(payload, dict):
        raise ValueError("the response is not a JSON object")
    out = []
    for e in payload.get("items", []):  # an empty page has no 'items' key
        name = str(e["name"])
        if name.endswith("/") or not name.startswith(listing.prefix):
            continue  # a folder placeholder, or outside the prefix
        try:
            md5 = base64.b64decode(e["md5Hash"], validate=True).hex() if e.get("md5Hash") else None
        except (binascii.Error, ValueError):
            md5 = None  # s3 items carry none (see the module docstring)
        out.append(
            SourceFile(
                name=name[len(listing.prefix) :].lstrip("/"),
                url=f"{listing.base}/{urllib.parse.quote(listing.bucket, safe='')}/{urllib.parse.quote(name)}",
                size_bytes=int(e["size"]) if e.get("size") is not None else None,
                md5=md5 if md5 and len(md5) == 32 else None,
                split=listing.split,
            )
        )
    return out


def read_listing(listing: Listing, get_json: GetJson = _get_json) -> list[SourceFile]:
    """The files ``listing``'s API lists, filtered by its ``include`` patterns; ListingError (naming
    the URL and why) when it cannot be read, is malformed, or lists no file."""
    url = listing_url(listing)
    files: list[SourceFile] = []
    try:
        if listing.api in ("gcs", "s3"):
            page_url = url
            token_key, token_param = (
                ("nextPageToken", "pageToken") if listing.api == "gcs" else ("next", "continuation-token")
            )
            for _ in range(MAX_PAGES):
                payload = get_json(page_url)
                files.extend(_bucket_page(payload, listing))
                token = payload.get(token_key)
                if not token:
                    break
                page_url = f"{url}&{urllib.parse.urlencode({token_param: token})}"
            else:
                raise ValueError(f"more than {MAX_PAGES} pages")
        else:
            payload = get_json(url)
            files = (_figshare if listing.api == "figshare" else _invenio)(payload, listing)
    except urllib.error.HTTPError as exc:
        raise ListingError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, ValueError, ET.ParseError) as exc:  # URLError, timeouts, bad JSON or XML
        raise ListingError(f"{url}: {exc}") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise ListingError(f"{url}: a file entry lacks {exc} (not the {listing.api} API's layout)") from exc
    if listing.include:
        files = [f for f in files if any(fnmatch.fnmatchcase(f.name, p) for p in listing.include)]
    if not files:
        which = f" matching {', '.join(listing.include)}" if listing.include else ""
        raise ListingError(f"{url}: the publisher lists no files{which}")
    return files


def merge_files(manifest: Manifest, listed: list[SourceFile]) -> list[SourceFile]:
    """The listed files, each carrying what the manifest says of the same name (split, subset,
    rounded size, checksums, URL); a checksum or exact size that disagrees raises ListingError."""
    known = {f.name: f for f in manifest.files}
    out = []
    for got in listed:
        mine = known.get(got.name)
        if mine is None:
            out.append(got)
            continue
        for key in ("md5", "sha256", "size_bytes"):
            pinned, read = getattr(mine, key), getattr(got, key)
            if pinned is not None and read is not None and str(pinned).lower() != str(read).lower():
                raise ListingError(
                    f"{got.name}: the publisher's list gives {key} {read}, manifest {manifest.name!r} pins "
                    f"{pinned} ({manifest.path}): the release changed; check it before updating the manifest"
                )
        out.append(
            dataclasses.replace(
                mine,
                url=mine.url or got.url,
                size_bytes=mine.size_bytes if mine.size_bytes is not None else got.size_bytes,
                md5=mine.md5 or got.md5,
                sha256=mine.sha256 or got.sha256,
            )
        )
    return out


def _load_lock(path: Path) -> list[SourceFile]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [SourceFile(**entry) for entry in data["files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ListingError(f"{path}: unreadable pinned file list ({exc}); delete it to read the list afresh") from exc


def _write_lock(path: Path, url: str, files: list[SourceFile]) -> None:
    from omni_data.store.catalog import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"listed_from": url, "files": [dataclasses.asdict(f) for f in files]}
    atomic_write_bytes(path, (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def release_files(
    manifest: Manifest,
    dest_dir: Path | None = None,
    refresh: bool = False,
    get_json: GetJson = _get_json,
    pin: bool = True,
) -> tuple[list[SourceFile], str]:
    """(the release files, where the list came from): the manifest's own files; or, for a manifest
    with ``listing``, the list pinned in ``dest_dir`` (unless ``refresh``), else the API's list,
    merged with the manifest's and pinned in ``dest_dir`` (when given and ``pin``)."""
    if manifest.listing is None:
        return list(manifest.files), "manifest"
    lock = Path(dest_dir) / LOCK_NAME if dest_dir is not None else None
    if lock is not None and lock.is_file() and not refresh:
        return _load_lock(lock), f"pinned list {lock}"
    url = listing_url(manifest.listing)
    files = merge_files(manifest, read_listing(manifest.listing, get_json))
    if lock is not None and pin:
        _write_lock(lock, url, files)
    return files, f"the publisher's list {url}"
