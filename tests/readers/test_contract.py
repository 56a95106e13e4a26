"""One contract round trip for every registered reader, and proof that the checker catches breakage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from omni_data.readers import READERS, Partition, ReadOptions, frame_ranges, sniff
from omni_data.schema import Record, Rejected
from omni_data.testing import ContractError, check_reader

# One real sample per reader (relative to shared/data); readers absent here have no real sample
# in PROVENANCE.md ("Not found"), and their own tests use published-layout fixtures instead.
SAMPLES: dict[str, str] = {
    "extxyz": "extxyz/chemreporter_spice_amino_acid_ligand_26frames.extxyz",
    "asedb": "asedb/fairchem_oxides.db",
    "aselmdb": "aselmdb/chemreporter_omol25_reactivity_samples.aselmdb",
    "vasp": "vasp/custodian_postprocess_ggau_spin_relax.OUTCAR",
    "pyg_lmdb": "lmdb/matsciml_lips_devset_200.lmdb",
    "spice_hdf5": "hdf5/modelforge_SPICE-1.1.4_n2.hdf5",
    "ani_hdf5": "hdf5/modelforge_ani1x_n5.hdf5",
}
NO_REAL_SAMPLE = {"mptrj_json", "matpes_json", "qcml"}


def test_every_registered_reader_is_covered() -> None:
    assert set(READERS) == set(SAMPLES) | NO_REAL_SAMPLE, "add the new reader to SAMPLES or NO_REAL_SAMPLE"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_reader_contract_on_real_sample(shared_data: Path, name: str) -> None:
    path = shared_data / SAMPLES[name]
    if name in ("extxyz", "asedb", "aselmdb", "vasp"):  # the core formats are recognised by name/magic
        assert sniff(path) == name
    report = check_reader(name, path, ReadOptions(dataset="c", task="t"))
    assert report.n_records > 0
    assert report.n_partitions >= 2 or report.n_records + report.n_rejected == 1


# --- the checker itself: a reader that breaks one rule at a time must be caught -------------


def _rec(i: int, **kw) -> Record:
    base = dict(
        numbers=np.array([1, 1]),
        positions=np.zeros((2, 3)) + [[0, 0, 0], [0, 0, 0.74]],
        id=f"c:f:{i}",
        dataset="c",
        task="t",
        energy=-1.0,
        source_file="f",
        source_index=i,
    )
    base.update(kw)
    return Record(**base).normalized()


def _fake(n: int, make: Callable[[int], Record | Rejected], parts: Callable[[int, int], list[Partition]] | None = None):
    def partitions(path: Path, target: int) -> list[Partition]:
        if parts is not None:
            return parts(n, target)
        return [Partition(str(path), a, b) for a, b in frame_ranges(n, target)]

    def read(part: Partition, opts: ReadOptions) -> Iterator[Record | Rejected]:
        for i in range(part.start, n if part.stop is None else part.stop):
            yield make(i)

    return SimpleNamespace(partitions=partitions, read=read)


def _check(reader, **kw):
    return check_reader(reader, Path("f"), ReadOptions(dataset="c", task="t"), target=2, **kw)


def test_good_fake_reader_passes() -> None:
    report = _check(_fake(5, _rec), expected_records=5, expected_rejected=0)
    assert report.n_partitions == 3 and report.ids == [f"c:f:{i}" for i in range(5)]


@pytest.mark.parametrize(
    "reader,rule",
    [
        (_fake(4, lambda i: _rec(i, id="c:f:same")), "unique ids"),
        (_fake(4, lambda i: _rec(i, id=f"other:{i}")), "id"),
        (_fake(4, lambda i: _rec(i, source_file="")), "provenance"),
        (_fake(4, lambda i: _rec(i, source_index=-1)), "provenance"),
        (_fake(4, lambda i: _rec(i, energy=float("nan"))), "schema"),
        (_fake(4, lambda i: _rec(i, dataset="x")), "options"),
        (
            _fake(
                4,
                lambda i: Record(
                    numbers=[1],
                    positions=[[0, 0, 0]],
                    id=f"c:f:{i}",
                    dataset="c",
                    task="t",
                    source_file="f",
                    source_index=i,
                ),
            ),
            "dtype",
        ),
        (_fake(4, lambda i: _rec(i, metadata={"a": np.float32(1)})), "metadata"),
        (_fake(4, lambda i: Rejected("f", i, "no kind here")), "rejected"),
        (_fake(4, lambda i: {"id": i}), "type"),
        (_fake(4, _rec, parts=lambda n, t: [Partition("f", 0, 3), Partition("f", 2, 4)]), "unique ids"),
        (
            _fake(
                4,
                lambda i: Rejected("f", i, "parse:x"),
                parts=lambda n, t: [Partition("f", 0, 3), Partition("f", 2, 4)],
            ),
            "coverage",
        ),
        (_fake(4, _rec, parts=lambda n, t: [Partition("f", 0, 2), Partition("f", 0, 2)]), "partitions"),
        (_fake(4, _rec, parts=lambda n, t: [Partition("f", 0, 4, (("obj", object()),))]), "partitions"),
    ],
)
def test_checker_catches_broken_reader(reader, rule: str) -> None:
    with pytest.raises(ContractError, match=rf"\[{rule}\]"):
        _check(reader)


def test_checker_catches_partitions_that_drop_records() -> None:
    reader = _fake(
        5, _rec, parts=lambda n, t: [Partition("f", 0, 2), Partition("f", 3, 5)] if t < n else [Partition("f", 0, 5)]
    )
    with pytest.raises(ContractError, match=r"\[coverage\]"):
        _check(reader)


def test_checker_catches_unstable_ids_and_wrong_counts() -> None:
    counter = iter(range(10**6))
    with pytest.raises(ContractError, match=r"\[deterministic\]|\[coverage\]"):
        _check(_fake(4, lambda i: _rec(i, id=f"c:f:{i}:{next(counter)}")))
    with pytest.raises(ContractError, match=r"\[counts\]"):
        _check(_fake(4, _rec), expected_records=5)
    with pytest.raises(ContractError, match=r"\[counts\]"):
        _check(_fake(4, lambda i: Rejected("f", i, "parse:bad")), expected_rejected=0)
