"""vasp reader against ase.io.read(index=":") and pymatgen Vasprun/Outcar on every real VASP sample."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import ase.io
import numpy as np
import pytest

from omni_data.readers import Partition, ReaderError, ReadOptions, get_reader
from omni_data.schema import Record, Rejected
from omni_data.testing import check_reader, read_all

vasp = get_reader("vasp")
GPA = 0.006241509125883258  # ase.units.GPa, eV/Å^3

# file -> number of ionic steps ASE recovers (None: ASE cannot read the file)
ASE_READABLE = {
    "chgnet_nboc_relax_49steps.OUTCAR": 49,
    "chgnet_nboc_relax_49steps.vasprun.xml": 49,
    "custodian_bad_vasprun_truncated_ggau.vasprun.xml": 5,
    "custodian_lobster_v51_static_nonspin.OUTCAR": 1,
    "custodian_lobster_v51_static_nonspin.vasprun.xml": 1,
    "custodian_postprocess_ggau_spin_relax.OUTCAR": 28,
    "custodian_postprocess_ggau_spin_relax.vasprun.xml": 28,
    "custodian_unconverged_scan_static.vasprun.xml": 1,
    "dpdata_6362_relax_truncated.OUTCAR": 2,
    "dpdata_ch4_md_unconverged.OUTCAR": 3,
    "dpdata_h2o_md.vasprun.xml": 3,
    "fairchem_oc_27998_rpbe_slab.vasprun.xml": 1,
    "sevennet_hfo2_scan_static_12at_vasp544.OUTCAR": 1,
    "sevennet_hfo2_scan_static_96at_vasp632.OUTCAR": 1,
}


def _opts(**kw) -> ReadOptions:
    kw.setdefault("options", {"keep_unconverged": True})
    return ReadOptions(dataset="v", task="pbe", **kw)


def _records(items: list) -> list[Record]:
    return sorted((i for i in items if isinstance(i, Record)), key=lambda r: r.source_index)


@pytest.mark.parametrize("name", sorted(ASE_READABLE))
def test_matches_ase(shared_data: Path, name: str) -> None:
    path = shared_data / "vasp" / name
    fmt = "vasp-xml" if name.endswith(".xml") else "vasp-out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = ase.io.read(path, index=":", format=fmt)
    assert len(frames) == ASE_READABLE[name]
    report = check_reader("vasp", path, _opts(), expected_records=len(frames))
    free = _records(read_all("vasp", path, _opts(energy_key="free_energy")))
    for rec, rec_free, atoms in zip(report.records and _records(report.records), free, frames):
        res = atoms.calc.results
        np.testing.assert_array_equal(rec.numbers, atoms.numbers)
        np.testing.assert_allclose(rec.positions, atoms.positions, atol=2e-5)
        np.testing.assert_allclose(rec.cell, atoms.cell[:], atol=1e-6)
        assert rec.energy == pytest.approx(res["energy"], abs=1e-6) and rec.energy_kind == "total"
        assert rec_free.energy == pytest.approx(res["free_energy"], abs=1e-6) and rec_free.energy_kind == "free"
        np.testing.assert_allclose(rec.forces, res["forces"], atol=1e-6)
        if "stress" in res:
            np.testing.assert_allclose(rec.stress, res["stress"], atol=1e-8)
        else:
            assert rec.stress is None
        if "magmoms" in res:
            np.testing.assert_allclose(rec.magmoms, res["magmoms"])


@pytest.mark.parametrize(
    "run",
    ["chgnet_nboc_relax_49steps", "custodian_postprocess_ggau_spin_relax", "custodian_lobster_v51_static_nonspin"],
)
def test_vasprun_and_outcar_agree_despite_vasp5_e0_bug(shared_data: Path, run: str) -> None:
    """vasprun's calculation/energy e_0_energy is wrong in VASP 5.x (e.g. -0.164 for the chgnet run);
    the reader never uses it, so all three energies match the OUTCAR of the same run."""
    xml = _records(read_all("vasp", shared_data / "vasp" / f"{run}.vasprun.xml", _opts()))
    out = _records(read_all("vasp", shared_data / "vasp" / f"{run}.OUTCAR", _opts()))
    assert len(xml) == len(out) > 0
    for a, b in zip(xml, out):
        for key in ("free_energy", "energy_sigma0", "energy_wo_entrp"):
            assert a.metadata["energies"][key] == pytest.approx(b.metadata["energies"][key], abs=2e-6)
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-6)
        np.testing.assert_allclose(a.stress, b.stress, atol=1e-5 * 0.1 * GPA * 10)
    if run.startswith("chgnet"):
        # OUTCAR last step: energy without entropy= -253.71642080  energy(sigma->0) = -253.79850546
        assert xml[-1].metadata["energies"]["energy_wo_entrp"] == pytest.approx(-253.71642080, abs=1e-6)
        wo = _records(read_all("vasp", shared_data / "vasp" / f"{run}.vasprun.xml", _opts(energy_key="e_wo_entrp")))
        assert wo[-1].energy == pytest.approx(-253.71642080, abs=1e-6)


def test_stress_and_free_energy_match_pymatgen(shared_data: Path) -> None:
    from pymatgen.io.vasp import Vasprun

    path = shared_data / "vasp" / "custodian_postprocess_ggau_spin_relax.vasprun.xml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vr = Vasprun(path, parse_dos=False, parse_eigen=False, parse_potcar_file=False)
    recs = _records(read_all("vasp", path, _opts(energy_key="free_energy")))
    assert len(recs) == len(vr.ionic_steps) == 28
    for rec, step in zip(recs, vr.ionic_steps):
        assert rec.energy == pytest.approx(step["e_fr_energy"], abs=1e-8)
        s = np.array(step["stress"])  # kBar, compression positive; Omni keeps the symmetric part
        s = (s + s.T) / 2
        expected = -0.1 * GPA * np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        np.testing.assert_allclose(rec.stress, expected, atol=1e-12)
        np.testing.assert_allclose(rec.forces, step["forces"], atol=1e-12)
    meta = recs[-1].metadata
    assert meta["incar"]["LDAU"] is True and meta["incar"]["ISPIN"] == 2 and meta["incar"]["ENCUT"] == 520.0
    assert meta["vasp_version"].startswith("5.3.5") and meta["converged_electronic"] is True


def test_unconverged_vasprun_rejected_by_default(shared_data: Path) -> None:
    from pymatgen.io.vasp import Vasprun

    path = shared_data / "vasp" / "custodian_unconverged_scan_static.vasprun.xml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vr = Vasprun(path, parse_dos=False, parse_eigen=False, parse_potcar_file=False)
    assert vr.converged_electronic is False
    (item,) = read_all("vasp", path, ReadOptions(dataset="v", task="pbe"))
    assert isinstance(item, Rejected) and item.reason.startswith("unconverged:electronic")
    (kept,) = read_all("vasp", path, _opts())
    assert kept.metadata["converged_electronic"] is False
    assert kept.metadata["incar"]["METAGGA"].upper() == "SCAN"
    assert vr.ionic_steps[-1]["e_0_energy"] == 0.0  # the VASP 5.4.4 vasprun bug the reader avoids
    assert kept.energy == pytest.approx(float(vr.final_energy), abs=1e-8)
    assert kept.metadata["energies"]["free_energy"] == pytest.approx(-157.58428872, abs=1e-8)


def test_unconverged_outcar_steps_flagged(shared_data: Path) -> None:
    path = shared_data / "vasp" / "dpdata_ch4_md_unconverged.OUTCAR"
    report = check_reader(
        "vasp", path, ReadOptions(dataset="v", task="pbe"), target=1, expected_records=1, expected_rejected=2
    )
    assert all(r.reason.startswith("unconverged:electronic (15 SCF steps reached NELM=15)") for r in report.rejected)
    kept = _records(read_all("vasp", path, _opts()))
    assert [r.metadata["converged_electronic"] for r in kept] == [False, False, True]
    assert [r.metadata["n_electronic_steps"] for r in kept] == [15, 15, 12]


def test_truncated_files(shared_data: Path, tmp_path: Path) -> None:
    bad = shared_data / "vasp" / "custodian_bad_vasprun_truncated_ggau.vasprun.xml"
    items = read_all("vasp", bad, _opts())
    assert len(items) == 5 and all(isinstance(i, Record) for i in items)  # cut in finalpos: 5 whole steps
    assert all(i.metadata["converged_electronic"] is False for i in items)  # 100 SCF steps = NELM each
    assert items[-1].metadata["energies"]["free_energy"] == pytest.approx(-134.33107279)
    outcar = shared_data / "vasp" / "dpdata_6362_relax_truncated.OUTCAR"
    report = check_reader("vasp", outcar, _opts(), target=2, expected_records=2, expected_rejected=1)
    assert report.rejected[0].reason.startswith("parse:truncated") and report.rejected[0].source_index == 2
    assert _records(report.records)[-1].energy == pytest.approx(-98.49852205)
    # a vasprun cut inside its 4th <calculation> (derived from a real file)
    text = (shared_data / "vasp" / "chgnet_nboc_relax_49steps.vasprun.xml").read_bytes()
    cut = text.index(b"<calculation>", text.index(b"</calculation>") + 1)
    for _ in range(2):
        cut = text.index(b"<calculation>", cut + 1)
    cut_path = tmp_path / "cut.vasprun.xml"
    cut_path.write_bytes(text[: cut + 5000])
    report = check_reader("vasp", cut_path, _opts(), target=3, expected_records=3, expected_rejected=1)
    assert report.rejected[0].reason.startswith("parse:truncated vasprun.xml") and report.rejected[0].source_index == 3


def test_no_ionic_step_is_reader_error(shared_data: Path) -> None:
    path = shared_data / "vasp" / "custodian_large_cell_truncated_no_steps.vasprun.xml"
    with pytest.raises(ReaderError, match="no ionic step"):
        vasp.partitions(path, 10)
    with pytest.raises(ReaderError, match="custodian_large_cell"):
        list(vasp.read(Partition(str(path)), _opts()))


def test_nwrite0_outcar_keeps_printed_steps(shared_data: Path) -> None:
    from pymatgen.io.vasp import Outcar

    path = shared_data / "vasp" / "dpdata_ti_aimd_vasp630.OUTCAR"
    report = check_reader("vasp", path, _opts(), expected_records=2, expected_rejected=8)
    assert all(r.reason.startswith("missing:positions not printed") for r in report.rejected)
    first, last = _records(report.records)
    assert (first.source_index, last.source_index) == (0, 9) and first.n_atoms == 32
    assert last.energy == pytest.approx(Outcar(str(path)).final_energy, abs=1e-8)
    assert last.metadata["vasp_version"].startswith("6.3.0")


def test_gzipped_outcar_and_ids(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "vasp" / "custodian_postprocess_ggau_spin_relax.OUTCAR"
    gz = tmp_path / "custodian_postprocess_ggau_spin_relax.OUTCAR.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(src.read_bytes())
    plain = _records(read_all("vasp", src, _opts()))
    zipped = _records(check_reader("vasp", gz, _opts(), target=10, expected_records=28).records)
    assert (
        [r.id for r in zipped]
        == [r.id for r in plain]
        == [f"v:custodian_postprocess_ggau_spin_relax.OUTCAR:{i}" for i in range(28)]
    )
    for a, b in zip(plain, zipped):
        assert a.energy == b.energy
        np.testing.assert_array_equal(a.magmoms, b.magmoms)
    xml = shared_data / "vasp" / "dpdata_h2o_md.vasprun.xml"
    xml_gz = tmp_path / "dpdata_h2o_md.vasprun.xml.gz"
    with gzip.open(xml_gz, "wb") as fh:
        fh.write(xml.read_bytes())
    assert [(r.id, r.energy) for r in _records(read_all("vasp", xml_gz, _opts()))] == [
        (r.id, r.energy) for r in _records(read_all("vasp", xml, _opts()))
    ]


def test_selective_dynamics_become_fixed(shared_data: Path) -> None:
    (rec,) = read_all("vasp", shared_data / "vasp" / "fairchem_oc_27998_rpbe_slab.vasprun.xml", _opts())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atoms = ase.io.read(shared_data / "vasp" / "fairchem_oc_27998_rpbe_slab.vasprun.xml", format="vasp-xml")
    fixed_ase = np.zeros(len(atoms), dtype=bool)
    for c in atoms.constraints:
        fixed_ase[c.get_indices()] = True
    np.testing.assert_array_equal(rec.fixed, fixed_ase)
    assert rec.fixed.sum() == 8 and rec.stress is None and rec.metadata["incar"]["GGA"] == "RP"


VASPRUNS = sorted(n for n in ASE_READABLE if n.endswith(".xml"))
OUTCARS = sorted([n for n in ASE_READABLE if n.endswith("OUTCAR")] + ["dpdata_ti_aimd_vasp630.OUTCAR"])


@pytest.mark.parametrize("name", VASPRUNS)
def test_every_vasprun_matches_pymatgen_ionic_steps(shared_data: Path, name: str) -> None:
    from pymatgen.io.vasp import Vasprun

    path = shared_data / "vasp" / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vr = Vasprun(path, parse_dos=False, parse_eigen=False, parse_potcar_file=False, exception_on_bad_xml=False)
    recs = _records(read_all("vasp", path, _opts(energy_key="free_energy")))
    assert len(recs) == len(vr.ionic_steps)
    for rec, step in zip(recs, vr.ionic_steps):
        assert rec.energy == pytest.approx(step["e_fr_energy"], abs=1e-8)
        np.testing.assert_allclose(rec.forces, step["forces"], atol=1e-12)
        np.testing.assert_allclose(rec.positions, step["structure"].cart_coords, atol=1e-6)
        if "stress" in step:
            s = np.array(step["stress"])
            np.testing.assert_allclose(
                rec.stress, -0.1 * GPA * ((s + s.T) / 2).reshape(9)[[0, 4, 8, 5, 2, 1]], atol=1e-12
            )
    assert all(r.metadata["converged_electronic"] is vr.converged_electronic for r in recs[-1:])


@pytest.mark.parametrize("name", OUTCARS)
def test_every_outcar_matches_pymatgen_final_energies(shared_data: Path, name: str) -> None:
    from pymatgen.io.vasp import Outcar

    path = shared_data / "vasp" / name
    out = Outcar(str(path))
    last = _records(read_all("vasp", path, _opts()))[-1]
    energies = last.metadata["energies"]
    assert energies["free_energy"] == pytest.approx(out.final_fr_energy, abs=1e-8)
    if name != "dpdata_6362_relax_truncated.OUTCAR":  # pymatgen takes these two from the cut-off step
        assert last.energy == energies["energy_sigma0"] == pytest.approx(out.final_energy, abs=1e-8)
        assert energies["energy_wo_entrp"] == pytest.approx(out.final_energy_wo_entrp, abs=1e-8)
    if out.magnetization:
        np.testing.assert_allclose(last.magmoms, [m["tot"] for m in out.magnetization])
    else:
        assert last.magmoms is None


def test_not_a_vasp_file_is_reader_error(tmp_path: Path) -> None:
    junk = tmp_path / "OUTCAR"
    junk.write_text("hello\nIteration      1(   1)\nworld\n")
    with pytest.raises(ReaderError, match="OUTCAR"):
        list(vasp.read(vasp.partitions(junk, 10)[0], _opts()))
    with pytest.raises(ValueError, match="energy_key"):
        list(vasp.read(Partition(str(junk)), _opts(energy_key="REF_energy")))


def test_ids_of_generic_file_names_include_run_directories(shared_data: Path, tmp_path: Path) -> None:
    src = (shared_data / "vasp" / "custodian_lobster_v51_static_nonspin.OUTCAR").read_bytes()
    for run in ("mp-1/static", "mp-2/static"):
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "OUTCAR").write_bytes(src)
    a = read_all("vasp", tmp_path / "mp-1/static/OUTCAR", _opts())[0]
    b = read_all("vasp", tmp_path / "mp-2/static/OUTCAR", _opts())[0]
    assert (a.id, b.id) == ("v:mp-1/static/OUTCAR:0", "v:mp-2/static/OUTCAR:0")
    rooted = read_all("vasp", tmp_path / "mp-1/static/OUTCAR", _opts(options={"root": str(tmp_path)}))[0]
    assert rooted.id == "v:mp-1/static/OUTCAR:0"
    deep = read_all("vasp", tmp_path / "mp-1/static/OUTCAR", _opts(options={"root": str(tmp_path / "mp-1")}))[0]
    assert deep.id == "v:static/OUTCAR:0"


def test_overflow_stars_give_missing_stress_not_a_number(shared_data: Path, tmp_path: Path) -> None:
    """VASP prints '*****' when a fixed-width field overflows; derived from the real lobster OUTCAR."""
    lines = (
        (shared_data / "vasp" / "custodian_lobster_v51_static_nonspin.OUTCAR").read_bytes().splitlines(keepends=True)
    )
    k = next(i for i, line in enumerate(lines) if line.startswith(b"  in kB"))
    lines[k] = b"  in kB  ************ ************ ************     0.00000     0.00000     0.00000\n"
    path = tmp_path / "stars.OUTCAR"
    path.write_bytes(b"".join(lines))
    (rec,) = read_all("vasp", path, _opts())
    assert rec.stress is None and "stress overflow" in rec.metadata["notes"][0]
    assert rec.energy == pytest.approx(-27.11090125)


# --- damaged files (issue 17 fuzzing): a broken step fails alone, never the file -----------------


def _lines_replaced(src: Path, dst: Path, line_no: int, old: bytes, new: bytes) -> Path:
    """``src`` with ``old`` replaced by ``new`` on line ``line_no`` (1-based), written to ``dst``."""
    lines = src.read_bytes().split(b"\n")
    assert old in lines[line_no - 1]
    lines[line_no - 1] = lines[line_no - 1].replace(old, new)
    dst.write_bytes(b"\n".join(lines))
    return dst


def test_outcar_damaged_force_row_rejects_that_step_only(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "vasp" / "dpdata_ch4_md_unconverged.OUTCAR"  # 3 ionic steps, CH4
    path = _lines_replaced(src, tmp_path / "OUTCAR", 2235, b"-0.119901", b"-0.11X901")  # step 1's first force row
    opts = ReadOptions(dataset="v", task="t", options={"keep_unconverged": True})
    items = read_all("vasp", path, opts, target=2)
    assert [type(i).__name__ for i in items] == ["Record", "Rejected", "Record"]
    assert items[1].source_index == 1 and "ionic step 1" in items[1].reason
    assert items[1].reason.startswith("parse:damaged outcar") and "table at line 2235" in items[1].reason
    assert "-0.11X901" in items[1].reason
    assert [r.source_index for r in items if isinstance(r, Record)] == [0, 2]


def test_outcar_step_without_closing_energy_line_is_rejected_not_merged(shared_data: Path, tmp_path: Path) -> None:
    """Step 1's closing line damaged: it is rejected; step 2 is not read into it (once it was, so
    step 2's structure came out twice, once under step 1's index)."""
    src = shared_data / "vasp" / "dpdata_ch4_md_unconverged.OUTCAR"
    path = _lines_replaced(src, tmp_path / "OUTCAR", 2252, b"energy  without entropy=", b"energy  without entrXpy=")
    opts = ReadOptions(dataset="v", task="t", options={"keep_unconverged": True})
    for target in (1, 2, 3):
        items = read_all("vasp", path, opts, target=target)
        assert [type(i).__name__ for i in items] == ["Record", "Rejected", "Record"], target
        assert (
            items[1].reason.startswith("parse:damaged outcar ionic step 1")
            and "no closing energy line" in items[1].reason
        )
        assert items[2].energy == pytest.approx(-23.95107730) and items[2].source_index == 2


def test_outcar_absurd_ions_per_type_is_reader_error(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "vasp" / "dpdata_ch4_md_unconverged.OUTCAR"
    path = _lines_replaced(src, tmp_path / "OUTCAR", 188, b"4   1", b"99999999999999999   1")
    with pytest.raises(ReaderError, match=r"OUTCAR: cannot parse as outcar .*implausible 'ions per type'"):
        read_all("vasp", path, ReadOptions(dataset="v", task="t"))


def test_vasprun_damaged_forces_reject_that_step_only(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "vasp" / "dpdata_h2o_md.vasprun.xml"  # 3 <calculation>s
    raw = src.read_bytes()
    second = raw.index(b'<varray name="forces" >', raw.index(b"<calculation>", raw.index(b"<calculation>") + 1))
    row = raw.index(b"<v>", second)
    path = tmp_path / "vasprun.xml"
    path.write_bytes(raw[:row] + b"<v> 1.0 </v>" + raw[raw.index(b"</v>", row) + 4 :])  # a force row of one number
    items = read_all("vasp", path, ReadOptions(dataset="v", task="t", options={"keep_unconverged": True}), target=2)
    assert [type(i).__name__ for i in items] == ["Record", "Rejected", "Record"]
    assert items[1].source_index == 1 and items[1].reason.startswith("parse:damaged vasprun ionic step 1: ValueError")


def test_vasprun_unknown_xml_encoding_is_reader_error(shared_data: Path, tmp_path: Path) -> None:
    raw = (shared_data / "vasp" / "dpdata_h2o_md.vasprun.xml").read_bytes()
    path = tmp_path / "vasprun.xml"
    path.write_bytes(raw.replace(b'encoding="ISO-8859-1"', b'encoding="ISO-8879-1"', 1))
    with pytest.raises(ReaderError, match=r"vasprun\.xml: cannot parse as vasprun .*unknown encoding"):
        read_all("vasp", path, ReadOptions(dataset="v", task="t"))
