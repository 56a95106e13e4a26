"""safeio: restricted unpickling, safe archive extraction, safe names."""
from __future__ import annotations

import collections
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from omni_data.readers._pickle_tensors import loads_record
from omni_data.safeio import (
    UnsafeArchiveError,
    UnsafePickleError,
    restricted_loads,
    safe_extract,
    safe_name,
)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Plain:  # an ordinary class: not on the allow-list either
    pass


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_restricted_loads_round_trips_plain_data(protocol: int) -> None:
    value = {
        "a": np.arange(12.0).reshape(3, 4)[:, 1:],
        "b": np.int64(7),
        "c": [1, 2.5, "x", b"\x00\xff", None, True],
        "d": collections.OrderedDict(k=1),
        "e": {1, 2},
        "f": complex(1, 2),
        "g": np.array([True, False]),
    }
    out = restricted_loads(pickle.dumps(value, protocol=protocol), "test")
    assert np.array_equal(out["a"], value["a"]) and out["a"].dtype == np.float64
    assert out["b"] == 7 and out["c"] == value["c"] and out["d"] == value["d"]
    assert out["e"] == {1, 2} and out["f"] == complex(1, 2)
    assert out["g"].tolist() == [True, False]


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_reduce_never_runs(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "marker"
    blob = pickle.dumps({"x": _Evil(marker)}, protocol=protocol)
    with pytest.raises(UnsafePickleError, match=r"src.lmdb key 3: refusing to load global (posix|os)\.system"):
        restricted_loads(blob, "src.lmdb key 3")
    with pytest.raises(UnsafePickleError, match="src key 9"):
        loads_record(blob, "src key 9")
    assert not marker.exists()
    # the same pickle does run under plain pickle: the test would notice a harmless unpickler
    pickle.loads(blob)
    assert marker.exists()


def test_unknown_classes_and_object_arrays_refused() -> None:
    with pytest.raises(UnsafePickleError, match="_Plain"):
        restricted_loads(pickle.dumps(_Plain()), "w")
    with pytest.raises(UnsafePickleError, match="object dtype"):
        restricted_loads(pickle.dumps(np.array([1, "a"], dtype=object)), "w")
    with pytest.raises(pickle.UnpicklingError, match="w: cannot unpickle"):
        restricted_loads(b"\x80\x05garbage", "w")


def test_tensor_rebuild_matches_torch(optional) -> None:
    torch = optional("torch", "model")
    t = torch.arange(24, dtype=torch.float64).reshape(4, 6).t()[1:5:2]
    value = {"t": t, "i": torch.tensor([[1, 2], [3, 4]], dtype=torch.int32), "b": torch.tensor([True, False])}
    out = loads_record(pickle.dumps(value, protocol=2), "w")
    assert np.array_equal(out["t"], t.numpy()) and out["t"].dtype == np.float64
    assert np.array_equal(out["i"], value["i"].numpy()) and out["i"].dtype == np.int32
    assert out["b"].tolist() == [True, False]
    bf = loads_record(pickle.dumps(torch.tensor([1.5, -2.25], dtype=torch.bfloat16)), "w")
    assert bf.tolist() == [1.5, -2.25]


# --------------------------------------------------------------------------- archives
def _tar(path: Path, members: list[tuple[str, bytes | None, str | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tf.addfile(info)
            else:
                info.size = len(data or b"")
                tf.addfile(info, io.BytesIO(data or b""))
    return path


def test_safe_extract_good_tar_and_zip(tmp_path: Path) -> None:
    arc = _tar(tmp_path / "ok.tar.gz", [("a/b.txt", b"hello", None), ("a/link", None, "b.txt")])
    out = tmp_path / "out"
    written = safe_extract(arc, out)
    assert (out / "a" / "b.txt").read_bytes() == b"hello"
    assert os.readlink(out / "a" / "link") == "b.txt" and (out / "a" / "link").read_bytes() == b"hello"
    assert sorted(p.name for p in written) == ["b.txt", "link"]
    zpath = tmp_path / "ok.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("d/e.json", "{}")
    safe_extract(zpath, tmp_path / "zout")
    assert (tmp_path / "zout" / "d" / "e.json").read_text() == "{}"


@pytest.mark.parametrize(
    "members",
    [
        [("ok.txt", b"x", None), ("../escape.txt", b"x", None)],
        [("/abs.txt", b"x", None)],
        [("dir/../../escape.txt", b"x", None)],
        [("evil_link", None, "../../etc/passwd")],
        [("abs_link", None, "/etc/passwd")],
    ],
)
def test_safe_extract_refuses_escapes(tmp_path: Path, members: list) -> None:
    arc = _tar(tmp_path / "bad.tar.gz", members)
    out = tmp_path / "sub" / "out"
    with pytest.raises(UnsafeArchiveError, match="bad.tar.gz"):
        safe_extract(arc, out)
    assert list(out.iterdir()) == []  # nothing written, not even the harmless member
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "sub" / "escape.txt").exists()


def test_safe_extract_refuses_zip_slip(tmp_path: Path) -> None:
    zpath = tmp_path / "slip.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("../../slip.txt", "x")
    with pytest.raises(UnsafeArchiveError, match="outside"):
        safe_extract(zpath, tmp_path / "out")
    assert not (tmp_path / "slip.txt").exists()


# --------------------------------------------------------------------------- names
def test_safe_name() -> None:
    assert safe_name("mp-1234_frame.7") == "mp-1234_frame.7"
    a, b = safe_name("C#C.[Na+]"), safe_name("C#C.[Na-]")
    assert a != b and a.startswith("C_C._Na_") and len(a) == len("C_C._Na_") + 11
    for raw in ("../../etc", "-rf /", "$(rm -rf ~); `x`", "", ".hidden", "a" * 500, "ü"):
        name = safe_name(raw)
        assert name and all(c.isalnum() and c.isascii() or c in "._-" for c in name)
        assert not name.startswith(("-", ".")) and len(name) <= 100
    assert safe_name(12) == "12"
