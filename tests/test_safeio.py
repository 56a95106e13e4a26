"""safeio: restricted unpickling, safe archive extraction, safe names."""

from __future__ import annotations

import collections
import io
import os
import pickle
import resource
import stat
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from omni_data.readers._pickle_tensors import loads_record
from omni_data.safeio import (
    ArchiveError,
    PickleLimits,
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


# --------------------------------------------------------------------------- allocation bombs
def _g(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _long(n: int) -> bytes:  # LONG1 opcode
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little")
    return b"\x8a" + bytes([len(raw)]) + raw


class _Alloc:
    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self):
        return (bytearray, (self.n,))


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _refused_cheaply(blob: bytes, match: str, loader=restricted_loads) -> None:
    before = _maxrss_mb()
    with pytest.raises(UnsafePickleError, match=match):
        loader(blob, "bomb.lmdb key b'7'")
    assert _maxrss_mb() - before < 200


def test_bytearray_bomb_refused_before_allocating() -> None:
    blob = pickle.dumps(_Alloc(1 << 30), protocol=4)
    assert len(blob) < 60
    limit = r"bomb\.lmdb key b'7': pickle asks for bytearray\(1073741824\) = 1,073,741,824 bytes, over the limit of 1,048,576 bytes"
    _refused_cheaply(blob, limit)
    _refused_cheaply(blob, limit, loads_record)
    _refused_cheaply(pickle.dumps(_Alloc(1 << 30), protocol=2), r"bytearray\(1073741824\)")


def test_many_small_allocations_share_one_budget() -> None:
    blob = pickle.dumps([_Alloc(1 << 19) for _ in range(100)], protocol=4)  # 50 MiB from ~1 kB
    _refused_cheaply(blob, r"bytearray\(524288\) = 524,288 bytes \(1,048,576 already granted\)")


def test_bytes_and_numpy_bombs_refused() -> None:
    dtype_u1 = _g("numpy", "dtype") + b"X\x02\x00\x00\x00u1\x85R"
    bytes_bomb = (
        b"\x80\x02"
        + _g("numpy.core.numeric", "_frombuffer")
        + b"("
        + _long(1 << 30)
        + dtype_u1
        + _long(1 << 30)
        + b"\x85X\x01\x00\x00\x00CtR."
    )
    _refused_cheaply(bytes_bomb, "_frombuffer needs a bytes buffer, got int")
    _refused_cheaply(
        b"\x80\x02" + _g("__builtin__", "bytes") + _long(1 << 30) + b"\x85R.",
        r"bytes\(1073741824\) = 1,073,741,824 bytes",
    )
    shape = _long(1 << 40) + b"\x85"
    reconstruct = (
        b"\x80\x02" + _g("numpy.core.multiarray", "_reconstruct") + _g("numpy", "ndarray") + shape + b"C\x01b\x87R."
    )
    _refused_cheaply(reconstruct, r"numpy array \(1099511627776,\) of int8 = 1,099,511,627,776 bytes, over the limit")
    call = b"\x80\x02" + _g("numpy", "ndarray") + shape + b"\x85R."
    _refused_cheaply(call, r"numpy\.ndarray\(\.\.\.\) may not be called")
    with pytest.raises(
        pickle.UnpicklingError, match="bomb.lmdb key b'7': cannot unpickle.*NEWOBJ class argument must be a type"
    ):
        restricted_loads(b"\x80\x02" + _g("numpy", "ndarray") + shape + b"\x85\x81.", "bomb.lmdb key b'7'")


def _legacy_storage(values: np.ndarray) -> bytes:
    """A legacy ``torch.save`` stream of one FloatStorage, written by hand (no torch needed)."""
    out = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(obj, out, protocol=2)
    out.write(
        b"\x80\x02(X\x07\x00\x00\x00storage"
        + _g("torch", "FloatStorage")
        + b"X\x01\x00\x00\x000"
        + b"X\x03\x00\x00\x00cpu"
        + _long(values.size)
        + b"NtQ."
    )
    pickle.dump(["0"], out, protocol=2)
    out.write(np.int64(values.size).tobytes() + values.astype("<f4").tobytes())
    return out.getvalue()


def _tensor_pickle(values: np.ndarray, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    payload = _legacy_storage(values)
    tup = lambda xs: b"(" + b"".join(_long(x) if x else b"K\x00" for x in xs) + b"t"  # noqa: E731
    return (
        b"\x80\x02"
        + _g("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + _g("torch.storage", "_load_from_bytes")
        + b"C"
        + bytes([len(payload)])
        + payload
        + b"\x85R"
        + b"K\x00"
        + tup(size)
        + tup(stride)
        + b"\x89"
        + _g("collections", "OrderedDict")
        + b")RtR."
    )


def test_tensor_stride_zero_bomb_refused_and_real_tensor_kept() -> None:
    ok = loads_record(_tensor_pickle(np.array([1.5, -2.0, 3.25]), (3,), (1,)), "w")
    assert ok.dtype == np.float32 and ok.tolist() == [1.5, -2.0, 3.25]
    expanded = loads_record(_tensor_pickle(np.array([7.0]), (2, 2), (0, 0)), "w")
    assert expanded.tolist() == [[7.0, 7.0], [7.0, 7.0]]
    bomb = _tensor_pickle(np.array([7.0]), (1 << 28,), (0,))  # one float repeated 2^28 times = 1 GiB
    _refused_cheaply(bomb, r"tensor of size \(268435456,\) \(float32\) = 1,073,741,824 bytes", loads_record)


def test_hard_cap_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    value = {"a": np.arange(3 * 2**17, dtype=np.float64)}  # 3 MiB of real data
    blob = pickle.dumps(value, protocol=2)
    assert np.array_equal(restricted_loads(blob, "w")["a"], value["a"])
    with pytest.raises(
        UnsafePickleError,
        match=r"w: pickle asks for numpy array \(393216,\) of float64 = 3,145,728 bytes, over the limit of 1,048,576",
    ):
        restricted_loads(blob, "w", limits=PickleLimits(hard_cap=1 << 20))
    monkeypatch.setenv("OMNI_PICKLE_MAX_BYTES", str(1 << 20))
    with pytest.raises(UnsafePickleError, match=r"at most 1,048,576\)"):
        restricted_loads(blob, "w")
    monkeypatch.setenv("OMNI_PICKLE_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match=r"\$OMNI_PICKLE_MAX_BYTES must be a number of bytes, got 'lots'"):
        restricted_loads(blob, "w")


# --------------------------------------------------------------------------- numpy dtypes
class _RawDtype:
    """Pickles as numpy.dtype(obj, False, True) followed by an arbitrary __setstate__."""

    def __init__(self, obj: str, state: tuple) -> None:
        self.obj, self.state = obj, state

    def __reduce__(self):
        return (np.dtype, (self.obj, False, True), self.state)


def test_dtype_state_cannot_forge_objects_or_fields() -> None:
    forged_flags = restricted_loads(pickle.dumps(_RawDtype("V8", (3, "|", None, None, None, 8, 1, 0x3F))), "w")
    assert forged_flags == np.dtype("V8") and not forged_flags.hasobject
    with pytest.raises(UnsafePickleError, match="field 'a' must be \\(dtype, offset"):
        restricted_loads(pickle.dumps(_RawDtype("V8", (3, "|", None, ("a",), {"a": "junk"}, 8, 1, 0))), "w")
    with pytest.raises(UnsafePickleError, match="field type must be a dtype, got str"):
        restricted_loads(pickle.dumps(_RawDtype("V8", (3, "|", None, ("a",), {"a": ("junk", 0)}, 8, 1, 0))), "w")
    with pytest.raises(UnsafePickleError, match="itemsize 1099511627776 does not match 'f8'"):
        restricted_loads(pickle.dumps(_RawDtype("f8", (3, "<", None, None, None, 1 << 40, 1, 0))), "w")
    with pytest.raises(UnsafePickleError, match="numpy dtype 'O8'"):
        restricted_loads(pickle.dumps(_RawDtype("O8", (3, "|", None, None, None, -1, -1, 63))), "w")


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_numpy_values_round_trip_exactly(protocol: int) -> None:
    struct = np.dtype({"names": ["x", "v"], "formats": ["<f4", (">i8", (2,))], "offsets": [0, 8], "itemsize": 32})
    value = {
        "big": np.array([1.0, -2.5, 3e300], dtype=">f8"),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
        "text": np.array(["Li", "PS4"]),
        "when": np.array(["2024-01-02T03:04:05.123456789"], dtype="M8[ns]"),
        "rec": np.zeros(1, dtype=struct),  # zeroed, so its padding bytes compare too
        "sub": np.zeros(2, dtype=("<f4", (3,))),
        "empty": np.zeros((0, 3)),
        "scalar": np.float32(2.5),
        "dt": np.dtype(">i4"),
        "shared": [np.arange(2)] * 2,
    }
    value["rec"][0] = (1.5, [2, -3])
    out = restricted_loads(pickle.dumps(value, protocol=protocol), "w")
    for key in ("big", "fortran", "text", "when", "rec", "sub", "empty"):
        assert type(out[key]) is np.ndarray and out[key].dtype == value[key].dtype, key
        assert out[key].tobytes() == value[key].tobytes() and out[key].shape == value[key].shape, key
    assert out["big"].tolist() == [1.0, -2.5, 3e300] and out["fortran"].flags.f_contiguous
    assert out["rec"]["v"].tolist() == [[2, -3]] and out["text"].tolist() == ["Li", "PS4"]
    assert out["scalar"] == np.float32(2.5) and out["dt"] == np.dtype(">i4")
    assert out["shared"][0] is out["shared"][1]


def test_real_lmdb_records_load_unchanged(shared_data: Path, optional) -> None:
    import lmdb

    loaded = {}
    for name in ("matsciml_lips_devset_200.lmdb", "matsciml_alexandria_devset_98.lmdb"):
        env = lmdb.open(str(shared_data / "lmdb" / name), readonly=True, lock=False, subdir=False)
        with env.begin() as txn:
            loaded[name] = {k: (v, loads_record(v, f"{name} key {k!r}")) for k, v in txn.cursor()}
        env.close()
    lips = loaded["matsciml_lips_devset_200.lmdb"]
    assert len(lips) == 200
    for raw, rec in lips.values():
        assert rec["pos"].shape == (83, 3) and rec["pos"].dtype == np.float32 and rec["force"].shape == (83, 3)
        assert set(np.unique(rec["atomic_numbers"]).tolist()) == {3, 15, 16} and -370 < float(rec["energy"]) < -340
    alex = loaded["matsciml_alexandria_devset_98.lmdb"]
    assert len(alex) == 98
    for raw, rec in alex.values():
        assert np.asarray(rec["force"]).shape == (len(rec["structure"]["sites"]), 3)
    torch = optional("torch", "model")  # independent reference: torch's own unpickling of the same bytes
    for raw, rec in list(lips.values())[:20] + list(alex.values())[:20]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the samples name numpy.core
            ref = pickle.loads(raw)
        for key, want in ref.items():
            if isinstance(want, (torch.Tensor, np.ndarray)):
                got = np.asarray(rec[key])
                assert got.dtype == np.asarray(want).dtype and np.array_equal(got, np.asarray(want)), key


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
    arc = _tar(tmp_path / "ok.tar.gz", [("a/b.txt", b"hello", None), ("a/c/d.txt", b"x", None)])
    out = tmp_path / "out"
    written = safe_extract(arc, out)
    assert (out / "a" / "b.txt").read_bytes() == b"hello" and (out / "a" / "c" / "d.txt").read_bytes() == b"x"
    assert sorted(p.relative_to(out.resolve()).as_posix() for p in written) == ["a/b.txt", "a/c/d.txt"]
    zpath = tmp_path / "ok.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("d/e.json", "{}")
    safe_extract(zpath, tmp_path / "zout")
    assert (tmp_path / "zout" / "d" / "e.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".extract-")] == []


@pytest.mark.parametrize(
    "members",
    [
        [("ok.txt", b"x", None), ("../escape.txt", b"x", None)],
        [("/abs.txt", b"x", None)],
        [("dir/../../escape.txt", b"x", None)],
        [("evil_link", None, "../../etc/passwd")],
        [("abs_link", None, "/etc/passwd")],
        [("inner_link", None, "ok.txt")],  # every link is refused, even one pointing inside
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


# chained relative symlinks: each link's text stays inside the root, the chain leads out of it
def _chain(n: int) -> list[tuple[str, int, str]]:
    return [("sub/l1", tarfile.SYMTYPE, "..")] + [
        (f"sub/l{k}", tarfile.SYMTYPE, f"l{k - 1}/..") for k in range(2, n + 1)
    ]


def _tar_typed(path: Path, members: list[tuple[str, int, str | bytes]]) -> Path:
    """A tar of (name, type, link target or file bytes) members, in that order."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                info.linkname = str(payload)
                tf.addfile(info)
    return path


def _files_outside(base: Path, root: Path) -> set[Path]:
    return {p for p in base.rglob("*") if not p.is_relative_to(root) and (p.is_file() or p.is_symlink())}


def test_chained_symlink_tar_refused_and_nothing_escapes(tmp_path: Path) -> None:
    arc = _tar_typed(tmp_path / "chain.tar.gz", [*_chain(2), ("sub/l2/escaped.xyz", tarfile.REGTYPE, b"pwned\n")])
    root = tmp_path / "store" / "root"
    with pytest.raises(UnsafeArchiveError, match=r"chain\.tar\.gz: member 'sub/l1' is a symbolic link to '\.\.'"):
        safe_extract(arc, root)
    assert list(root.iterdir()) == []
    assert _files_outside(tmp_path, root) == {arc}
    assert not any(p.name == "escaped.xyz" for p in tmp_path.rglob("*"))


def test_hard_link_through_symlink_chain_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET host name\n")
    # 40 links deep reach "/", then the secret's absolute path: the text stays inside the root
    target = f"sub/l40{secret}"
    arc = _tar_typed(tmp_path / "hard.tar.gz", [*_chain(40), ("stolen.xyz", tarfile.LNKTYPE, target)])
    root = tmp_path / "store" / "root"
    with pytest.raises(UnsafeArchiveError, match="hard.tar.gz: member 'sub/l1'"):
        safe_extract(arc, root)
    assert list(root.iterdir()) == []
    assert [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == secret.read_bytes()] == [secret]


@pytest.mark.parametrize("kind,label", [(tarfile.LNKTYPE, "hard link"), (tarfile.SYMTYPE, "symbolic link")])
def test_lone_link_member_is_named(tmp_path: Path, kind: int, label: str) -> None:
    arc = _tar_typed(tmp_path / "one.tar", [("a.xyz", tarfile.REGTYPE, b"1\n"), ("b.xyz", kind, "a.xyz")])
    with pytest.raises(UnsafeArchiveError, match=f"one.tar: member 'b.xyz' is a {label} to 'a.xyz'"):
        safe_extract(arc, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def _zip_with(path: Path, entries: list[tuple[str, int, bytes]]) -> Path:
    """A zip whose entries carry Unix modes (``S_IFLNK`` entries hold their link text)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, mode, data in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def test_zip_symlink_chain_refused(tmp_path: Path) -> None:
    link = stat.S_IFLNK | 0o777
    arc = _zip_with(
        tmp_path / "chain.zip",
        [("sub/l1", link, b".."), ("sub/l2", link, b"l1/.."), ("sub/l2/escaped.xyz", stat.S_IFREG | 0o644, b"pwned")],
    )
    root = tmp_path / "store" / "root"
    with pytest.raises(UnsafeArchiveError, match=r"chain\.zip: member 'sub/l1' is a symbolic link to '\.\.'"):
        safe_extract(arc, root)
    assert list(root.iterdir()) == [] and not any(p.name == "escaped.xyz" for p in tmp_path.rglob("*"))
    fifo = _zip_with(tmp_path / "fifo.zip", [("f.xyz", stat.S_IFIFO | 0o644, b"")])
    with pytest.raises(UnsafeArchiveError, match="fifo.zip: member 'f.xyz' is not a file or folder"):
        safe_extract(fifo, tmp_path / "out2")


def test_existing_link_inside_target_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "data").symlink_to(outside)
    arc = _tar(tmp_path / "plain.tar.gz", [("data/x.xyz", b"x", None)])
    with pytest.raises(UnsafeArchiveError, match="link leading outside"):
        safe_extract(arc, root)
    assert list(outside.iterdir()) == []


def test_damaged_and_clashing_archives_are_clear_errors(tmp_path: Path) -> None:
    good = _tar(tmp_path / "good.tar.gz", [("a.xyz", b"x" * 5000, None)])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ArchiveError, match="cut.tar.gz"):
        safe_extract(cut, tmp_path / "o1")
    clash = _tar(tmp_path / "clash.tar.gz", [("a", b"file", None), ("a/b.xyz", b"x", None)])
    with pytest.raises(UnsafeArchiveError, match="clash.tar.gz: member 'a/b.xyz' clashes"):
        safe_extract(clash, tmp_path / "o2")


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
