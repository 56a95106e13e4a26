"""pyg_lmdb reader: real matsciml LMDBs checked against plain pickle+torch, an OC20-style fixture
of pickled torch_geometric ``Data`` objects, a malicious pickle that must not run (that record is
quarantined, the rest read) and files that are not LMDB at all.

OC20 fixture layout follows fairchem's LMDB docs (``fairchem.core.datasets.LmdbDataset``; the
S2EF preprocessing script ``preprocess_ef.py``): single-file LMDB, keys ``str(i).encode("ascii")``,
a ``length`` key, values ``pickle.dumps(Data(pos, cell (1,3,3), atomic_numbers, natoms, tags,
fixed, force, y, sid, fid), protocol=-1)``.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import types
import warnings
from pathlib import Path

import lmdb
import numpy as np
import pytest

from omni_data.readers import ReaderError, ReadOptions, pyg_lmdb
from omni_data.schema import Rejected
from omni_data.testing import check_reader

torch = pytest.importorskip("torch")


def _plain(path: Path) -> dict[bytes, dict]:
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core names in old pickles
        out = {k: pickle.loads(v) for k, v in txn.cursor()}
    env.close()
    return out


def test_lips_matches_plain_pickle(shared_data: Path) -> None:
    path = shared_data / "lmdb" / "matsciml_lips_devset_200.lmdb"
    opts = ReadOptions(dataset="lips", task="pbe")
    report = check_reader("pyg_lmdb", path, opts, target=64, expected_records=200, expected_rejected=0)
    plain = _plain(path)
    by_id = {r.id: r for r in report.records}
    for key in (b"0", b"17", b"199"):
        ref = plain[key]
        rec = by_id[f"lips:matsciml_lips_devset_200.lmdb/{key.decode()}"]
        assert np.array_equal(rec.positions, ref["pos"].double().numpy())
        assert np.array_equal(rec.numbers, ref["atomic_numbers"].numpy())
        assert np.array_equal(rec.forces, ref["force"].double().numpy())
        assert np.array_equal(rec.cell, ref["cell"].double().numpy().reshape(3, 3))
        assert rec.energy == pytest.approx(float(ref["energy"]), abs=0)
        assert rec.pbc.tolist() == [bool(x) for x in ref["pbc"].tolist()]
    assert rec.n_atoms == 83


def test_alexandria_structure_dicts(shared_data: Path) -> None:
    from pymatgen.core import Structure

    path = shared_data / "lmdb" / "matsciml_alexandria_devset_98.lmdb"
    report = check_reader("pyg_lmdb", path, ReadOptions(dataset="alex", task="pbe"), expected_records=98)
    plain = _plain(path)
    ref = plain[b"5"]
    rec = next(r for r in report.records if r.id == f"alex:{ref['entry_id']}")
    struct = Structure.from_dict(ref["structure"])
    assert np.allclose(rec.positions, struct.cart_coords)
    assert rec.numbers.tolist() == list(struct.atomic_numbers)
    assert np.allclose(rec.cell, struct.lattice.matrix)
    assert rec.energy == ref["targets"]["regression"]["energy_total"]
    assert np.array_equal(rec.forces, ref["force"])
    assert np.array_equal(rec.magmoms, ref["magmoms"])
    assert rec.metadata["targets.regression.e_form"] == ref["targets"]["regression"]["e_form"]


# --------------------------------------------------------------------------- OC20-style fixture
def _fake_pyg(monkeypatch: pytest.MonkeyPatch) -> tuple[type, type]:
    """Stand-in classes registered as torch_geometric.data.data.Data / storage.GlobalStorage."""
    data_mod = types.ModuleType("torch_geometric.data.data")
    storage_mod = types.ModuleType("torch_geometric.data.storage")

    class Data:  # PyG>=2 keeps attributes in self._store (a GlobalStorage)
        pass

    class GlobalStorage:
        pass

    class DataTensorAttr:  # PyG 2 keeps these classes themselves in Data.__dict__
        pass

    class DataEdgeAttr:
        pass

    for cls, mod in (
        (Data, data_mod),
        (DataTensorAttr, data_mod),
        (DataEdgeAttr, data_mod),
        (GlobalStorage, storage_mod),
    ):
        cls.__module__, cls.__qualname__ = mod.__name__, cls.__name__
        setattr(mod, cls.__name__, cls)
    Data.attr_classes = (DataTensorAttr, DataEdgeAttr)
    for name, mod in [
        ("torch_geometric", types.ModuleType("torch_geometric")),
        ("torch_geometric.data", types.ModuleType("torch_geometric.data")),
        ("torch_geometric.data.data", data_mod),
        ("torch_geometric.data.storage", storage_mod),
    ]:
        monkeypatch.setitem(sys.modules, name, mod)
    return Data, GlobalStorage


def _oc20_frame(rng: np.random.Generator, i: int) -> dict:
    n = 5 + i % 3
    return {
        "pos": torch.tensor(rng.uniform(0, 8, (n, 3)), dtype=torch.float32),
        "cell": torch.tensor(np.diag([8.0, 8.5, 20.0])[None], dtype=torch.float32),
        "atomic_numbers": torch.tensor(rng.choice([1, 6, 8, 29], n), dtype=torch.float32),  # OC20 stores floats
        "natoms": n,
        "tags": torch.tensor([0] * (n - 2) + [1, 2], dtype=torch.long),
        "fixed": torch.tensor([1] * (n - 2) + [0, 0], dtype=torch.float32),
        "force": torch.tensor(rng.normal(size=(n, 3)), dtype=torch.float32),
        "y": float(-10.0 - i),
        "sid": 1000 + i // 2 if i % 2 == 0 else torch.tensor([1000 + i // 2]),  # both forms occur
        "fid": i % 2,
    }


def _write_lmdb(path: Path, values: list[bytes], length: bool = True) -> None:
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24, meminit=False)
    with env.begin(write=True) as txn:
        for i, v in enumerate(values):
            txn.put(str(i).encode("ascii"), v)
        if length:
            txn.put(b"length", pickle.dumps(len(values), protocol=-1))
    env.sync()
    env.close()


@pytest.mark.parametrize("pyg_version", [1, 2])
def test_oc20_data_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pyg_version: int) -> None:
    Data, GlobalStorage = _fake_pyg(monkeypatch)
    rng = np.random.default_rng(0)
    frames = [_oc20_frame(rng, i) for i in range(7)]
    values = []
    for f in frames:
        d = Data.__new__(Data)
        if pyg_version == 2:
            store = GlobalStorage.__new__(GlobalStorage)
            store.__dict__.update({"_mapping": dict(f), "_parent": d})
            d.__dict__.update(
                {"_store": store, "_tensor_attr_cls": Data.attr_classes[0], "_edge_attr_cls": Data.attr_classes[1]}
            )
        else:  # PyG 1.x: attributes straight in __dict__, unset ones None
            d.__dict__.update({**f, "x": None, "edge_index": None})
        values.append(pickle.dumps(d, protocol=-1))
    path = tmp_path / "data.0000.lmdb"
    _write_lmdb(path, values)
    opts = ReadOptions(dataset="oc20", task="oc20", key_map={"energy": "y"}, energy_kind="referenced")
    report = check_reader("pyg_lmdb", path, opts, target=3, expected_records=7, expected_rejected=0)
    assert report.n_partitions == 3
    rec = report.records[4]
    ref = frames[4]
    assert rec.id == "oc20:1002_0"
    assert rec.energy == -14.0 and rec.energy_kind == "referenced"
    assert np.array_equal(rec.positions, ref["pos"].double().numpy())
    assert rec.numbers.tolist() == [int(z) for z in ref["atomic_numbers"].tolist()]
    assert np.array_equal(rec.forces, ref["force"].double().numpy())
    assert np.array_equal(rec.cell, np.diag([8.0, 8.5, 20.0]))
    assert rec.pbc.all()
    assert rec.fixed.tolist() == [True] * (rec.n_atoms - 2) + [False, False]
    assert rec.tags.tolist() == [0] * (rec.n_atoms - 2) + [1, 2]
    assert rec.metadata["sid"] == 1002 and rec.metadata["fid"] == 0
    assert report.records[5].id == "oc20:1002_1" and report.records[5].metadata["sid"] == 1002


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what an attacker would put in an LMDB value
        return (os.system, (f"touch {self.marker}",))


def _items(path: Path) -> list:
    opts = ReadOptions(dataset="x", task="t")
    return [item for part in pyg_lmdb.partitions(path, 10) for item in pyg_lmdb.read(part, opts)]


GOOD = pickle.dumps({"pos": np.zeros((1, 3)), "atomic_numbers": np.array([1]), "energy": 0.0})


def test_malicious_pickle_is_quarantined_not_run_and_the_rest_read(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"pos": _Evil(marker)})
    path = tmp_path / "evil.lmdb"
    _write_lmdb(path, [GOOD, evil, GOOD], length=False)
    first, refused, third = _items(path)
    assert first.id == "x:evil.lmdb/0" and third.id == "x:evil.lmdb/2"
    assert isinstance(refused, Rejected) and refused.source_index == 1 and refused.source_file == str(path)
    assert re.fullmatch(
        r"unsafe_pickle:1 refusing to load global (posix|os)\.system \(not on the allow-list\)", refused.reason
    ), refused.reason
    assert not marker.exists()


def test_unreadable_values_are_quarantined_as_parse(tmp_path: Path) -> None:
    path = tmp_path / "garbled.lmdb"
    _write_lmdb(path, [GOOD, b"\x80\x04\x95not a pickle stream\xff", GOOD[:-7], GOOD, b""])
    items = _items(path)
    assert [type(i).__name__ for i in items] == ["Record", "Rejected", "Rejected", "Record", "Rejected"]
    for item, key in zip((items[1], items[2], items[4]), ("1", "2", "4")):
        assert item.reason.startswith(f"parse:{key} cannot unpickle ("), item.reason
        assert int(key) == item.source_index
    assert items[3].id == "x:garbled.lmdb/3"


class _Bomb:
    def __reduce__(self):  # 53 pickled bytes that ask for 100 MB
        return (bytearray, (10**8,))


def test_allocation_bomb_is_quarantined_as_unsafe(tmp_path: Path) -> None:
    path = tmp_path / "bomb.lmdb"
    _write_lmdb(path, [GOOD, pickle.dumps({"pos": _Bomb()}, protocol=2), GOOD])
    first, bomb, third = _items(path)
    assert (first.id, third.id) == ("x:bomb.lmdb/0", "x:bomb.lmdb/2")
    assert bomb.reason.startswith("unsafe_pickle:1 pickle asks for bytearray(100000000)"), bomb.reason


def test_bad_unpickler_setting_fails_the_partition_not_each_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ok.lmdb"
    _write_lmdb(path, [GOOD, GOOD])
    monkeypatch.setenv("OMNI_PICKLE_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="OMNI_PICKLE_MAX_BYTES"):
        _items(path)


def test_not_an_lmdb_file_is_refused_before_mapping(tmp_path: Path) -> None:
    path = tmp_path / "junk.lmdb"
    path.write_bytes(b"\x00garbage, not an LMDB file\xff" * 300)
    with pytest.raises(ReaderError, match=r"junk\.lmdb: not an LMDB file \(meta page 0 has magic 0x"):
        pyg_lmdb.partitions(path, 10)
    path.write_bytes(b"PK")
    with pytest.raises(ReaderError, match=r"junk\.lmdb: not an LMDB file \(too short for meta page 0"):
        pyg_lmdb.partitions(path, 10)


def test_damaged_second_meta_page_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "meta.lmdb"
    _write_lmdb(path, [GOOD])
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    psize = env.stat()["psize"]
    env.close()
    raw = bytearray(path.read_bytes())
    raw[psize + 16 : psize + 20] = b"\x00\x00\x00\x00"  # mm_magic of meta page 1 (after the 16-byte page header)
    path.write_bytes(bytes(raw))
    with pytest.raises(ReaderError, match=r"meta\.lmdb: not an LMDB file \(meta page 1 has magic 0x00000000"):
        pyg_lmdb.partitions(path, 10)
    raw[16:20] = (0xBEEFC0DE).to_bytes(4, "big")  # meta page 0 as a big-endian machine writes it
    path.write_bytes(bytes(raw))
    with pytest.raises(ReaderError, match="big-endian"):
        pyg_lmdb.partitions(path, 10)


def test_bad_natoms_is_rejected(tmp_path: Path) -> None:
    value = pickle.dumps({"pos": np.zeros((2, 3)), "atomic_numbers": np.array([1, 1]), "natoms": 3})
    path = tmp_path / "bad.lmdb"
    _write_lmdb(path, [value])
    (item,) = list(pyg_lmdb.read(pyg_lmdb.partitions(path, 10)[0], ReadOptions(dataset="x", task="t")))
    assert item.reason.startswith("parse:") and "natoms" in item.reason and item.source_index == 0


def test_non_symmetric_stress_is_symmetrised_and_its_asymmetry_noted_in_ev_per_a3(tmp_path: Path) -> None:
    """Issue 22 item 2: a (1,3,3) stress is no longer cut to its upper triangle: the record holds
    (σ + σᵀ)/2 and ``metadata["stress_asymmetry"]`` = max |σij - σji| / 2 in eV/Å³ (here the
    source is in GPa, so 4 GPa of asymmetry is 0.024966 eV/Å³)."""
    s = np.array([[[1.0, 2.0, 0.0], [10.0, 3.0, 0.5], [0.0, 0.5, 4.0]]])  # xy 2 vs yx 10
    frame = {
        "pos": np.array([[0.0, 0, 0], [1.5, 0, 0]]),
        "cell": np.eye(3)[None] * 5,
        "atomic_numbers": np.array([1, 1]),
        "energy": -1.0,
        "stress": s,
    }
    _write_lmdb(tmp_path / "s.lmdb", [pickle.dumps(frame, protocol=4)])
    opts = ReadOptions(dataset="x", task="t", stress_unit="GPa")
    (rec,) = [item for part in pyg_lmdb.partitions(tmp_path / "s.lmdb", 10) for item in pyg_lmdb.read(part, opts)]
    gpa = 0.006241509125883258
    np.testing.assert_allclose(rec.stress, np.array([1.0, 3.0, 4.0, 0.5, 0.0, 6.0]) * gpa, rtol=1e-12)
    assert rec.metadata["stress_asymmetry"] == pytest.approx(4.0 * gpa, rel=1e-12)
