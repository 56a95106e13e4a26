"""``catalog.json``: the one list of complete shards, their checksums, counts and provenance.

A shard exists for readers only once it is in the catalog. Every change is read-modify-write
under an ``fcntl`` lock on ``STORE/.catalog.lock`` and lands by write-temp-then-``os.replace``,
so a reader sees either the old or the new catalog, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omni_data.schema import SCHEMA_VERSION

__all__ = [
    "OldStoreFormat",
    "atomic_write_bytes",
    "fsync_dir",
    "empty_catalog",
    "summarize",
    "read_catalog",
    "write_catalog",
    "catalog_lock",
    "update_catalog",
    "dump_catalog",
    "add_shards",
    "add_shard",
    "add_run",
    "reader_view",
    "Catalog",
]

CATALOG_NAME = "catalog.json"
LOCK_NAME = ".catalog.lock"
STORE_FORMAT = 2
"""2: each record once in LMDB (checksummed values), scalar columns in Parquet (docs/store.md).
1: Arrow + LMDB copies of every record; read only by ``omni-data convert-store``."""


class OldStoreFormat(ValueError):
    """A store written in an older store format (the message says how to convert it)."""


TMP_MARK = ".tmp-"
"""Every temporary file a store writer makes is ``.<final name>.tmp-<pid>``: ``verify`` lists any left."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, then rename; if any
    step fails (a full disk: ``[Errno 28] PATH: No space left on device``) the temp file is
    removed and ``path`` keeps its old content."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"{path}: {os.strerror(errno.ENOSPC)}") from exc
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(str(folder), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def empty_catalog() -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "store_format": STORE_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "shards": [],
        "counts": summarize([]),
        "runs": [],
        "sections": {},
    }


def summarize(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Store-wide counts from the per-shard counts."""
    by_task: Counter[str] = Counter()
    by_dataset: Counter[str] = Counter()
    by_element: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    records = atoms = quarantined = 0
    for shard in shards:
        records += shard["records"]
        atoms += shard.get("atoms", 0)
        quarantined += shard.get("quarantined", 0)
        by_task.update(shard.get("by_task", {}))
        by_dataset.update(shard.get("by_dataset", {}))
        by_element.update(shard.get("by_element", {}))
        reasons.update(shard.get("quarantined_by_reason", {}))
    return {
        "records": records,
        "atoms": atoms,
        "shards": len(shards),
        "by_task": dict(sorted(by_task.items())),
        "by_dataset": dict(sorted(by_dataset.items())),
        "by_element": dict(sorted(by_element.items())),
        "quarantined": quarantined,
        "quarantined_by_reason": dict(sorted(reasons.items())),
    }


def read_catalog(store_dir: Path, reader: bool = False) -> dict[str, Any]:
    """The catalog of ``store_dir`` as a dict (an empty catalog if the store is new);
    ``reader=True``: its ``reader_view``, each shard entry trimmed as it is parsed (so the
    whole catalog is never in memory at once)."""
    path = Path(store_dir) / CATALOG_NAME
    if not path.is_file():
        return empty_catalog()
    raw = path.read_bytes()
    checked = _check_sum(path, raw)
    try:
        data = json.loads(raw.decode("utf-8"), object_hook=_reader_entry if reader else None)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: catalog is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("shards", []), list):
        raise ValueError(f"{path}: catalog is not a JSON object with a list of shards")
    fmt = data.get("store_format", 1)
    if fmt != STORE_FORMAT:
        if isinstance(fmt, int) and fmt < STORE_FORMAT:
            raise OldStoreFormat(
                f"{Path(store_dir)}: store format {fmt} (Omni before store v2); convert it with "
                f"`omni-data convert-store {Path(store_dir)} NEW_STORE`"
            )
        raise ValueError(f"{path}: store format {fmt!r}, this Omni reads {STORE_FORMAT} (written by a newer Omni?)")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {data.get('schema_version')!r}, this code reads {SCHEMA_VERSION}")
    if not checked:
        raise ValueError(
            f"{path}: no checksum line (damaged, or edited by hand: rewrite it with "
            "omni_data.store.catalog.write_catalog)"
        )
    data.pop(CHECKSUM_KEY, None)
    return data


def _check_sum(path: Path, raw: bytes) -> bool:
    """True when ``raw`` starts with a checksum line that matches the rest; False when it has
    none; ``ValueError`` naming ``path`` when it does not match."""
    from crc32c import crc32c

    end = raw.find(b"\n")
    first = raw[:end]
    if end < 0 or not first.startswith(_CHECKSUM_LINE) or len(first) != len(_CHECKSUM_LINE) + 10:
        return False
    try:
        expected = int(first[len(_CHECKSUM_LINE) : len(_CHECKSUM_LINE) + 8], 16)
    except ValueError:
        return False
    if crc32c(raw[end + 1 :]) != expected:
        raise ValueError(f"{path}: checksum mismatch (damaged catalog, or edited by hand)")
    return True


def write_catalog(store_dir: Path, data: dict[str, Any]) -> None:
    """Replace ``store_dir``'s catalog with ``data`` (counts recomputed), with its checksum line:
    for tools and tests that edit a catalog outside ``update_catalog``."""
    data = dict(data)
    data["counts"] = summarize(data["shards"])
    atomic_write_bytes(Path(store_dir) / CATALOG_NAME, dump_catalog(data).encode("utf-8"))


@contextlib.contextmanager
def catalog_lock(store_dir: Path) -> Iterator[None]:
    """Exclusive lock for read-modify-write of the catalog (blocks other writers, not readers)."""
    Path(store_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(store_dir) / LOCK_NAME, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def update_catalog(store_dir: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply ``change`` to the catalog under the lock, recompute counts, replace the file."""
    with catalog_lock(store_dir):
        data = read_catalog(store_dir)
        change(data)
        data["shards"].sort(key=lambda s: s["name"])
        data["counts"] = summarize(data["shards"])
        atomic_write_bytes(Path(store_dir) / CATALOG_NAME, dump_catalog(data).encode("utf-8"))
    return data


CHECKSUM_KEY = "crc32c"
_CHECKSUM_LINE = b'{"crc32c": "'


def dump_catalog(data: dict[str, Any]) -> str:
    """The catalog as JSON text: a first line ``{"crc32c": "<8 hex>",`` holding the CRC-32C of
    every byte after it (a damaged or hand-edited catalog is an error, ``read_catalog``), then
    each shard entry on one line and everything else indented.

    A store of 242M structures has about 24,000 shards; indenting every entry made each
    catalog write 47 MB and 1.6 s of ``json.dumps``, one line per shard is 0.45 s (and still one
    ``grep`` away from any shard).
    """
    from crc32c import crc32c

    parts = []
    for key, value in data.items():
        if key == CHECKSUM_KEY:
            continue
        if key == "shards" and value:
            lines = ",\n".join("  " + json.dumps(entry, separators=(", ", ": ")) for entry in value)
            parts.append(f' "shards": [\n{lines}\n ]')
        else:  # JSON strings never hold a raw newline: indenting every line is safe
            parts.append(f" {json.dumps(key)}: " + json.dumps(value, indent=1).replace("\n", "\n "))
    rest = ",\n".join(parts) + "\n}\n"
    return f'{_CHECKSUM_LINE.decode()}{crc32c(rest.encode("utf-8")):08x}",\n' + rest


def add_shards(store_dir: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Register complete shards in one catalog write (the pipeline batches them: one rewrite per
    batch, not per shard). A name already catalogued is an error and nothing is added."""

    def change(data: dict[str, Any]) -> None:
        names = {s["name"] for s in data["shards"]}
        for entry in entries:
            if entry["name"] in names:
                raise ValueError(f"{store_dir}: shard {entry['name']!r} is already in the catalog")
            names.add(entry["name"])
        data["shards"].extend(entries)

    return update_catalog(store_dir, change)


def add_shard(store_dir: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Register one complete shard; a shard of the same name is an error (shards are immutable)."""
    return add_shards(store_dir, [entry])


def add_run(store_dir: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Append a provenance entry (command, manifest, versions, times, summary)."""
    return update_catalog(store_dir, lambda data: data["runs"].append(run))


# Per-shard detail that reading records never needs: ``Catalog(..., reader=True)`` (what a
# ``Store`` holds) leaves it out. At 24,000 shards the per-shard element counts alone were 80% of
# the catalog's 145 MiB in every process that opened the store (every DataLoader worker).
READER_OMITS = ("by_element", "quarantined_by_reason", "labels")


def reader_view(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with each shard entry's ``READER_OMITS`` and its files' ``sha256`` left out
    (the store-wide ``counts`` keep every total)."""
    return {**data, "shards": [_trim(dict(entry)) for entry in data.get("shards", [])]}


def _trim(entry: dict[str, Any]) -> dict[str, Any]:
    for key in READER_OMITS:
        entry.pop(key, None)
    files = entry.get("files")
    if isinstance(files, dict):
        entry["files"] = {
            fmt: {k: v for k, v in meta.items() if k != "sha256"} if isinstance(meta, dict) else meta
            for fmt, meta in files.items()
        }
    return entry


def _reader_entry(obj: dict[str, Any]) -> dict[str, Any]:
    """``json.loads`` object hook of ``read_catalog(reader=True)``: trims each shard entry (the
    one kind of object with ``name``, ``records`` and ``files``) as soon as it is parsed."""
    if "files" in obj and "records" in obj and "name" in obj:
        return _trim(obj)
    return obj


class Catalog:
    """A loaded catalog: ``.shards`` (sorted by name), ``.counts``, ``.sections``, ``.runs``.

    ``reader=True`` keeps the reader's view (``reader_view``): what ``Store`` needs to find and
    select records, without per-shard element counts and checksums (``omni-data verify`` and
    ``omni-data info`` load the whole catalog)."""

    def __init__(self, store_dir: Path, data: dict[str, Any] | None = None, reader: bool = False):
        self.store_dir = Path(store_dir)
        self.reader = reader
        self._index: tuple[list, int, dict[str, int]] | None = None  # shard(): name -> position
        if data is None:
            self.data = read_catalog(self.store_dir, reader=reader)
        else:
            self._set(data)

    def _set(self, data: dict[str, Any]) -> None:
        self.data = reader_view(data) if self.reader else data

    @property
    def shards(self) -> list[dict[str, Any]]:
        return self.data["shards"]

    @property
    def counts(self) -> dict[str, Any]:
        return self.data["counts"]

    @property
    def sections(self) -> dict[str, Any]:
        return self.data.get("sections", {})

    @property
    def runs(self) -> list[dict[str, Any]]:
        return self.data.get("runs", [])

    def shard(self, name: str) -> dict[str, Any] | None:
        """The entry of shard ``name`` (None if absent): a dict lookup, built once per shard list
        (callers ask shard by shard over the whole store)."""
        shards = self.shards
        index = self._index
        if index is None or index[0] is not shards or index[1] != len(shards):
            index = self._index = (shards, len(shards), {s["name"]: k for k, s in enumerate(shards)})
        k = index[2].get(name)
        return None if k is None else shards[k]

    def update_section(self, name: str, value: Any) -> None:
        """Set ``sections[name] = value`` atomically (JSON-serialisable ``value``)."""
        json.dumps(value)  # fail here, naming nothing half-written, if not serialisable

        def change(data: dict[str, Any]) -> None:
            data.setdefault("sections", {})[name] = value

        self._set(update_catalog(self.store_dir, change))

    def reload(self) -> Catalog:
        self.data = read_catalog(self.store_dir, reader=self.reader)
        return self
