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
    mols = ase.io.read(shared_data / "extxyz/chemreporter_spice_amino_acid_ligand_26frames.extxyz",
                       index=":")
    write_shard(path, "pbe", [atoms_record(a, "pbe", "feo", i) for i, a in enumerate(relax)],
                [Rejected("f.xyz", 4, "parse:bad line 7", "feo", "4"),
                 Rejected("f.xyz", 9, "parse:bad line 12", "feo", "9")])
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
    assert pngs == ["atoms_per_structure.png", "coverage_pbe.png", "coverage_spice.png",
                    "energy_per_atom.png", "energy_per_atom_referenced.png",
                    "force_magnitude.png", "quarantine.png"]
    for name in pngs:
        img = mpimg.imread(out / name)
        assert img.shape[0] > 100 and img.shape[1] > 300
        assert img[..., :3].std() > 0.01  # something is drawn
        assert f'src="{name}"' in page
    assert "Reference energies" in page and "Fe=" in page
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
