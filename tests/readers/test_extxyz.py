"""extxyz reader against ase.io.read on every real sample, plus damaged/edge-case frames.

Synthetic frames follow the extended XYZ layout documented at
https://github.com/libAtoms/extxyz (count line, key=value comment line, Properties columns).
"""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import ase.io
import numpy as np
import pytest

from omni_data.readers import ReadOptions, get_reader
from omni_data.schema import Record, Rejected
from omni_data.testing import check_reader, read_all

extxyz = get_reader("extxyz")
SAMPLES = [
    "chemreporter_slab_capital_Energy_key.extxyz",
    "chemreporter_spice_amino_acid_ligand_26frames.extxyz",
    "schnetpack_md17_ethanol_2000frames_kcalmol.extxyz",
    "schnetpack_md17_ethanol_snip_kcalmol.xyz",
    "sevennet_hfo2.extxyz",
]


def _opts(**kw) -> ReadOptions:
    return ReadOptions(dataset="t", task="test", **kw)


@pytest.mark.parametrize("name", SAMPLES)
def test_matches_ase_on_real_samples(shared_data: Path, name: str) -> None:
    path = shared_data / "extxyz" / name
    report = check_reader("extxyz", path, _opts())
    frames = ase.io.read(path, index=":")
    assert report.n_rejected == 0 and report.n_records == len(frames)
    for rec, atoms in zip(report.records, frames):
        np.testing.assert_array_equal(rec.numbers, atoms.numbers)
        np.testing.assert_allclose(rec.positions, atoms.positions, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(rec.pbc, atoms.pbc)
        if atoms.pbc.any():
            np.testing.assert_allclose(rec.cell, atoms.cell[:], atol=1e-12)
        else:
            assert rec.cell is None
        res = atoms.calc.results if atoms.calc is not None else {}
        energy = res.get("energy", atoms.info.get("Energy"))
        if energy is None:
            assert rec.energy is None
        else:
            assert rec.energy == pytest.approx(float(energy), abs=1e-9)
        for label in ("forces", "stress"):
            if label in res:
                np.testing.assert_allclose(getattr(rec, label), res[label], atol=1e-12)
            else:
                assert getattr(rec, label) is None


def test_capital_energy_key_is_recorded(shared_data: Path) -> None:
    (rec,) = read_all("extxyz", shared_data / "extxyz" / "chemreporter_slab_capital_Energy_key.extxyz", _opts())
    assert rec.energy == pytest.approx(-456.7993925)
    assert rec.metadata["energy_source_key"] == "Energy"
    assert rec.forces is None and rec.stress is None
    assert rec.pbc.all() and rec.cell[0, 0] == pytest.approx(9.174115)


def test_md17_kcal_per_mol_is_converted(shared_data: Path) -> None:
    path = shared_data / "extxyz" / "schnetpack_md17_ethanol_2000frames_kcalmol.extxyz"
    items = list(extxyz.read(extxyz.partitions(path, 5)[0], _opts(energy_unit="kcal/mol")))
    first = items[0]
    # comment line: energy=-97195.01189948035 (kcal/mol); 1 kcal/mol = 0.0433641 eV
    assert first.energy == pytest.approx(-97195.01189948035 * 0.0433641, rel=1e-6)
    assert first.energy == pytest.approx(-4214.7746, abs=1e-3)
    # first atom line: fx = 26.23068692 kcal/mol/Å
    assert first.forces[0, 0] == pytest.approx(26.23068692 * 0.0433641, rel=1e-6)
    assert first.cell is None and not first.pbc.any()
    assert [r.id for r in items] == [f"t:schnetpack_md17_ethanol_2000frames_kcalmol.extxyz:{i}" for i in range(5)]


def test_sgdml_plain_xyz_only_when_declared(shared_data: Path) -> None:
    path = shared_data / "extxyz" / "schnetpack_md17_ethanol_snip_kcalmol.xyz"
    plain = read_all("extxyz", path, _opts())
    assert all(r.energy is None and r.forces is None for r in plain)
    declared = read_all("extxyz", path, _opts(energy_unit="kcal/mol", options={"plain_xyz": "sgdml"}))
    assert declared[0].energy == pytest.approx(-97208.40600498248 * 0.04336410390059322)
    assert declared[0].forces[1, 0] == pytest.approx(17.9533587683 * 0.04336410390059322)
    assert declared[0].metadata["energy_source_key"].startswith("comment line")


def _frame(
    n: int = 2,
    header: str = 'Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc="F F F"',
    atoms: list[str] | None = None,
) -> str:
    atoms = atoms if atoms is not None else [f"H {i}.0 0.0 0.0 0.1 0.2 0.3" for i in range(n)]
    return f"{n}\n{header}\n" + "".join(a + "\n" for a in atoms)


def _write(tmp_path: Path, text: bytes | str, name: str = "x.extxyz") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def test_garbled_frames_are_rejected_and_reader_resynchronises(tmp_path: Path) -> None:
    text = (
        _frame()
        + "2x\nbroken header\nH 0 0 0 0 0 0\n"  # bad count line
        + _frame(3, atoms=["H 0 0 0 0 0 0", "H 1 0 0 0 0 0"])  # too few atom lines
        + _frame(2, atoms=["H 0 0 0 0 0 0", "H 1 0 zero 0 0 0"])  # non-numeric
        + _frame()
        + "3\nenergy=1\nH 0 0 0 0 0 0\n"  # truncated last frame
    )
    path = _write(tmp_path, text)
    report = check_reader("extxyz", path, _opts(), target=2, expected_records=2, expected_rejected=4)
    items = sorted(report.records + report.rejected, key=lambda r: r.source_index)
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Record", "Rejected", "Rejected", "Rejected", "Record", "Rejected"]
    assert items[1].reason.startswith("parse:bad count line") and "line 5" in items[1].reason
    assert items[2].reason.startswith("parse:too few atom lines")
    assert items[3].reason.startswith("parse:") and "zero" in items[3].reason
    assert items[5].reason.startswith("parse:truncated")
    assert items[4].energy == -1.5 and items[4].id == "t:x.extxyz:4"
    assert all(r.source_file == str(path) for r in items)


def test_non_utf8_comment_is_rejected(tmp_path: Path) -> None:
    text = _frame().encode() + b"1\nenergy=1 note=\xff\xfe\nH 0 0 0 0 0 0\n" + _frame().encode()
    items = read_all("extxyz", _write(tmp_path, text), _opts())
    assert isinstance(items[1], Rejected) and "non-UTF-8" in items[1].reason
    assert isinstance(items[0], Record) and isinstance(items[2], Record)


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"), (lzma.open, ".xz")])
def test_compressed_files_partition_by_offset(tmp_path: Path, opener, suffix: str) -> None:
    frames = [_frame(header=f'Properties=species:S:1:pos:R:3:forces:R:3 energy={-i}.25 pbc="F F F"') for i in range(7)]
    path = tmp_path / f"c.extxyz{suffix}"
    with opener(path, "wb") as fh:
        fh.write("".join(frames).encode())
    parts = extxyz.partitions(path, 3)
    assert [(p.start, p.stop) for p in parts] == [(0, 3), (3, 6), (6, 7)]
    assert parts[1].get("offset") == len("".join(frames[:3]).encode())
    report = check_reader("extxyz", path, _opts(), target=3, expected_records=7)
    assert [r.energy for r in sorted(report.records, key=lambda r: r.source_index)] == [
        float(f"{-i}.25") for i in range(7)
    ]
    assert report.records[0].id == "t:c.extxyz:0"


def test_virial_six_value_stress_and_key_map(tmp_path: Path) -> None:
    lattice = 'Lattice="2 0 0 0 3 0 0 0 4"'
    text = (
        _frame(
            header=f'{lattice} Properties=species:S:1:pos:R:3:force:R:3 REF_energy=-3 energy=9 virial="1 0 0 0 2 0 0 0 3"'
        )
        + _frame(
            header=f'{lattice} Properties=species:S:1:pos:R:3:forces:R:3 energy=1 stress="1 2 3 4 5 6" pbc="T T F"'
        )
        + _frame(header="Properties=species:S:1:pos:R:3:forces:R:3 dft_energy=2 my_e=7 charge=-1 spin=2")
    )
    path = _write(tmp_path, text)
    a, b, c = read_all("extxyz", path, _opts())
    assert a.energy == -3 and a.metadata["energy_source_key"] == "REF_energy"
    assert a.metadata["energy_other_keys"] == ["energy"]
    assert a.metadata["forces_source_key"] == "force" and a.forces[1, 2] == pytest.approx(0.3)
    # stress = -virial / V, V = 2*3*4 = 24 Å^3
    np.testing.assert_allclose(a.stress, [-1 / 24, -2 / 24, -3 / 24, 0, 0, 0])
    assert a.metadata["stress_source_key"].startswith("virial")
    np.testing.assert_allclose(b.stress, [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(b.pbc, [True, True, False])
    assert c.energy == 2 and c.charge == -1.0 and c.spin == 2 and c.cell is None
    (mapped,) = read_all(
        "extxyz",
        _write(tmp_path, _frame(header="my_e=7 energy=1 Properties=species:S:1:pos:R:3:forces:R:3"), "m.xyz"),
        _opts(key_map={"energy": "my_e"}),
    )
    assert mapped.energy == 7 and mapped.metadata["energy_source_key"] == "my_e"
    (free,) = read_all(
        "extxyz",
        _write(tmp_path, _frame(header="free_energy=-2 energy=-1 Properties=species:S:1:pos:R:3:forces:R:3"), "f.xyz"),
        _opts(energy_key="free_energy"),
    )
    assert free.energy == -2 and free.energy_kind == "free"


def test_periodic_without_lattice_is_rejected(tmp_path: Path) -> None:
    (item,) = read_all(
        "extxyz", _write(tmp_path, _frame(header='Properties=species:S:1:pos:R:3:forces:R:3 pbc="T T T"')), _opts()
    )
    assert isinstance(item, Rejected) and item.reason.startswith("bad_value:") and "Lattice" in item.reason


def test_round_trip_of_ase_written_file(tmp_path: Path) -> None:
    """ASE writes constraints as a move_mask:L column, tags as I, magmoms as R, stress as 9 values."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixAtoms

    atoms = Atoms(
        "CuAu2", positions=[[0, 0, 0], [1, 1, 1], [2, 0, 1]], cell=np.diag([3.0, 4, 5]), pbc=[True, True, False]
    )
    atoms.set_tags([0, 1, 2])
    atoms.set_constraint(FixAtoms([1]))
    stress = np.array([0.01, 0.02, 0.03, 0.004, 0.005, 0.006])
    atoms.calc = SinglePointCalculator(
        atoms,
        energy=-1.5,
        free_energy=-1.6,
        forces=np.arange(9.0).reshape(3, 3),
        stress=stress,
        magmoms=np.array([0.5, 0, -0.5]),
    )
    path = tmp_path / "ase.extxyz"
    ase.io.write(path, atoms, format="extxyz")
    (rec,) = read_all("extxyz", path, _opts())
    assert rec.energy == -1.5 and rec.energy_kind == "total"
    np.testing.assert_allclose(rec.stress, stress)
    np.testing.assert_allclose(rec.forces, np.arange(9.0).reshape(3, 3))
    np.testing.assert_allclose(rec.magmoms, [0.5, 0, -0.5])
    np.testing.assert_array_equal(rec.fixed, [False, True, False])
    np.testing.assert_array_equal(rec.tags, [0, 1, 2])
    np.testing.assert_array_equal(rec.pbc, [True, True, False])
    np.testing.assert_allclose(rec.cell, np.diag([3.0, 4, 5]))
    (free,) = read_all("extxyz", path, _opts(energy_key="free_energy"))
    assert free.energy == -1.6 and free.energy_kind == "free"


def test_unopenable_file_raises_reader_error(tmp_path: Path) -> None:
    from omni_data.readers import ReaderError

    with pytest.raises(ReaderError, match="missing.extxyz"):
        extxyz.partitions(tmp_path / "missing.extxyz", 10)


def test_non_integer_spin_is_dropped_to_unknown_not_truncated(tmp_path):
    """spin=2.5 used to become 2 (int()), and spin=text cost the frame: the schema judges it now."""
    from omni_data.readers import ReadOptions, get_reader

    path = tmp_path / "spin.extxyz"
    frame = '2\nProperties=species:S:1:pos:R:3 energy=-1.0 spin={} pbc="F F F"\nH 0 0 0\nH 0 0 0.74\n'
    path.write_text(frame.format("2.5") + frame.format("3") + frame.format("high"))
    reader = get_reader("extxyz")
    (part,) = reader.partitions(path, 1000)
    got = list(reader.read(part, ReadOptions(dataset="d", task="t")))
    assert [type(r).__name__ for r in got] == ["Record"] * 3
    assert [r.spin for r in got] == [None, 3, None]
    assert got[0].metadata["dropped_labels"] == {"spin": "spin multiplicity 2.5 is not an integer"}
    assert "spin" in got[2].metadata["dropped_labels"]
