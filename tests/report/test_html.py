"""The report on a small store built from real sample files: figures exist, page links them."""

from __future__ import annotations

import ase.io
import matplotlib.image as mpimg
import numpy as np
import pytest

from omni_data.cli.main import main
from omni_data.report.collect import reason_group, summarize_stores
from omni_data.schema import Rejected
from omni_data.store import write_shard
from tests.harmonize.conftest import atoms_record


@pytest.fixture(scope="module")
def store(shared_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "store"
    relax = ase.io.read(shared_data / "vasp/custodian_postprocess_ggau_spin_relax.OUTCAR", index=":")
    mols = ase.io.read(shared_data / "extxyz/chemreporter_spice_amino_acid_ligand_26frames.extxyz", index=":")
    write_shard(
        path,
        "pbe",
        [atoms_record(a, "pbe", "feo", i) for i, a in enumerate(relax)],
        [Rejected("f.xyz", 4, "parse:bad line 7", "feo", "4"), Rejected("f.xyz", 9, "parse:bad line 12", "feo", "9")],
    )
    write_shard(path, "spice", [atoms_record(a, "spice", "spice", i) for i, a in enumerate(mols)])
    return path


def test_summary_counts(store):
    s = summarize_stores([str(store)])
    assert s.tasks["pbe"].frames == 28 and s.tasks["spice"].frames == 26
    assert s.tasks["pbe"].element_frames[26] == 28 and s.tasks["pbe"].element_frames[8] == 28
    assert s.quarantine == {"parse:bad line #": 2}
    epa = s.tasks["spice"].array("epa")
    assert len(epa) == 26 and np.all(epa < -400)  # SPICE totals in eV are ~ -550 eV/atom
    assert s.tasks["pbe"].force_atoms == 28 * 4


def test_report_files(store, tmp_path, capsys):
    assert main(["references", str(store), "--no-cluster"]) == 0
    assert main(["dedup", str(store), "--no-cluster"]) == 0
    assert main(["split", str(store), "--no-cluster", "--group-key", "dataset"]) == 0
    out = tmp_path / "rep"
    assert main(["report", str(store), "--out", str(out), "--no-cluster"]) == 0
    page = (out / "report.html").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [
        "atoms_per_structure.png",
        "coverage_pbe.png",
        "coverage_spice.png",
        "energy_per_atom.png",
        "energy_per_atom_referenced.png",
        "force_magnitude.png",
        "quarantine.png",
    ]
    for name in pngs:
        img = mpimg.imread(out / name)
        assert img.shape[0] > 100 and img.shape[1] > 300
        assert img[..., :3].std() > 0.01  # something is drawn
        assert f'src="{name}"' in page
    assert "Reference energies" in page and "<h3>pbe: reference per element</h3>" in page
    assert "parse:bad line #" in page
    assert "not computed" not in page
    # the splits table: two datasets grouped by dataset -> whole groups of 28 and 26 frames
    from omni_data.store import Store

    counts = Store(store).catalog.sections["splits"]["counts"]
    assert sum(counts.values()) == 54 and set(counts.values()) <= {0, 26, 28, 54}
    assert f"<td>{counts['train']}</td><td>{counts['val']}</td><td>{counts['test']}</td>" in page


def test_reason_groups():
    assert reason_group("filter:max_force |F|=51.2 eV/Å on atom 3 > 50") == "filter:max_force"
    assert reason_group("duplicate:of a:1") == "duplicate:of"
    assert reason_group("nonfinite:forces") == "nonfinite:forces"


def _element_rows(page: str, task: str) -> dict[str, tuple[str, list[str]]]:
    """{symbol: (row class, cell texts)} of one task's per-element table in the page."""
    import re

    part = page.split(f"<h3>{task}: reference per element</h3>", 1)[1].split("</table>", 1)[0]
    rows = {}
    for cls, body in re.findall(r"<tr(?: class=\"(\w+)\")?>(.*?)</tr>", part):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", body)
        if cells:
            rows[cells[0]] = (cls, cells)
    return rows


def test_report_flags_underdetermined_references(store, shared_data, tmp_path, capsys):
    # task pbe holds only Fe2O2 frames (one relaxation): μ_Fe and μ_O are not separately
    # determined; task spice (five molecules over C, H, N, O) is fitted
    import html as htmllib

    from omni_data.store import Store

    assert main(["references", str(store), "--no-cluster"]) == 0
    cli = capsys.readouterr().out
    out = tmp_path / "rep"
    assert main(["report", str(store), "--out", str(out), "--no-cluster"]) == 0
    page = htmllib.unescape((out / "report.html").read_text())
    section = Store(store).catalog.sections["references"]
    pbe = _element_rows(page, "pbe")
    assert set(pbe) == {"Fe", "O"}
    part = page.split("<h3>pbe: reference per element</h3>", 1)[1].split("<h3>", 1)[0]
    assert "<p>absent from this task (no reference; μ = 0 is used): H, C, N</p>" in part
    for sym, z in (("Fe", "26"), ("O", "8")):
        cls, cells = pbe[sym]
        assert cls == "weak"
        assert cells == [sym, z, f"{section['pbe']['mu'][z]:.6f} (not determined)", "28", "undetermined"]
    flag = next(line.split("note: ", 1)[1] for line in cli.splitlines() if "note: underdetermined" in line)
    assert flag.startswith("underdetermined: O, Fe always occur in the same proportions (rank 1 < 2)")
    assert f'<p class="warn">{flag}. Greyed μ are not elemental energies' in page  # the CLI's words
    assert "underdetermined: O, Fe (rank 1 < 2)" in page  # the task table's fit column
    spice = _element_rows(page, "spice")
    assert set(spice) == {"H", "C", "N", "O"}
    assert "<p>absent from this task (no reference; μ = 0 is used): Fe</p>" in page
    mols = ase.io.read(shared_data / "extxyz/chemreporter_spice_amino_acid_ligand_26frames.extxyz", index=":")
    for sym, (cls, cells) in spice.items():
        assert cls == "" and cells[4] == ""
        assert cells[2] == f"{section['spice']['mu'][cells[1]]:.6f}"
        assert int(cells[3]) == sum(sym in a.get_chemical_symbols() for a in mols)
