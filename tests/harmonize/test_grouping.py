"""Group keys for splits: trajectory-like stores split by id are detected and a better key named."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import pytest
from ase.build import bulk

from omni_data.cli.main import main
from omni_data.harmonize import grouping as G
from omni_data.harmonize.splits import group_value, id_prefix, split_labels
from omni_data.store import Store
from tests.harmonize.conftest import emt_record, make_store


def trajectory(k: int, frames: int, seed: int, source: str | None = None, first: int = 0, **meta: str) -> list:
    """``frames`` EMT frames of one random-walk trajectory: same atoms, small steps, ids
    ``traj<k>:<i>``, source file ``traj<k>.xyz`` (or ``source``)."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))
    atoms.numbers = rng.choice([29, 28, 13, 79], size=len(atoms))
    out = []
    for i in range(frames):
        atoms.positions += rng.normal(0.0, 0.02, atoms.positions.shape)
        rec = emt_record(atoms, "emt", "md", first + i, **meta)
        out.append(dataclasses.replace(rec, id=f"traj{k}:{i}", source_file=source or f"traj{k}.xyz", source_index=i))
    return out


@pytest.fixture(scope="module")
def traj_records():
    return [r for k in range(6) for r in trajectory(k, 8, seed=10 + k)]


@pytest.fixture()
def traj_store(traj_records, tmp_path):
    # shards cut across trajectories: frames of one trajectory sit in two shards
    return make_store(tmp_path / "s", {"a": traj_records[:20], "b": traj_records[20:]})


def test_id_prefix():
    assert id_prefix("traj3:17") == "traj3"
    assert id_prefix("rxn001_frame_005") == "rxn001_frame"
    assert id_prefix("mol-a") == "mol-a"
    assert id_prefix("12345") == "12345"


def test_neighbour_pairs_are_consecutive_same_atoms_same_source(traj_records):
    pairs = G.neighbour_pairs(traj_records)
    assert len(pairs) == 6 * 7  # seven steps inside each of the six trajectories, none across
    assert all(a.source_file == b.source_file for a, b in pairs)


def test_plan_flags_id_grouping_of_trajectories_and_suggests_source_file(traj_store):
    plan = G.plan_groups(traj_store, manifest_keys={})
    g = plan.datasets["md"]
    assert (g.key, g.origin, g.sampled) == ("id", "default", 48)
    # 48 frames in two shards sampled in order: 42 neighbouring pairs minus the one cut by the shard edge
    assert g.score == G.KeyScore("id", 48, 1 / 48, 41, 41)
    assert g.leaks
    assert g.suggestion == G.KeyScore("source_file", 6, 8 / 48, 0, 41)
    [warning] = plan.warnings()
    assert "grouped by 'id', but 41 of 41 neighbouring frames in a sample of 48" in warning
    assert warning.endswith("re-run with --group-key source_file (6 groups in the sample, 0 neighbouring pairs split)")


def test_one_file_of_many_trajectories_suggests_formula(tmp_path):
    # six trajectories of different compositions concatenated in one file with ids all:<n>
    recs = []
    for k in range(6):
        for r in trajectory(k, 5, seed=30 + k, source="all.xyz"):
            recs.append(dataclasses.replace(r, id=f"all:{len(recs)}"))
    store = make_store(tmp_path / "s", {"a": recs})
    g = G.plan_groups(store, manifest_keys={}).datasets["md"]
    assert g.leaks and g.score.split_pairs == g.score.pairs == 24
    # source_file and id_prefix give one group; formula separates the six and splits no neighbours
    assert g.suggestion == G.KeyScore("formula", 6, 5 / 30, 0, 24)


def test_unrelated_structures_are_not_flagged(alloys, tmp_path):
    store = make_store(tmp_path / "s", {"a": alloys})
    plan = G.plan_groups(store, manifest_keys={})
    assert plan.datasets["alloys"].score.pairs == 0 and plan.warnings() == []


def test_natural_group_in_metadata_is_used_by_default(tmp_path):
    recs = [r for k in range(5) for r in trajectory(k, 6, seed=50 + k, group=f"run-{k}")]
    store = make_store(tmp_path / "s", {"a": recs[:13], "b": recs[13:]})
    plan = G.plan_groups(store, manifest_keys={})
    g = plan.datasets["md"]
    assert (g.key, g.origin, g.leaks) == ("metadata.group", "metadata", False)
    assert plan.notes() == [
        "dataset 'md' has no manifest; grouping by the 'metadata.group' its records carry (5 groups in a sample of 30)"
    ]
    assert group_value(recs[0], "metadata.group") == "run-0"


def test_bad_group_key_names_the_record(traj_store):
    with pytest.raises(
        ValueError,
        match=r"dataset 'md': group key 'trajectory' \(--group-key\) does "
        r"not apply: record 'traj0:0' \(traj0.xyz\)",
    ):
        G.plan_groups(traj_store, "trajectory")


def _groups_by_split(store_path) -> dict[str, set[str]]:
    table = split_labels(Store(store_path)).to_pydict()
    by_traj: dict[str, set[str]] = defaultdict(set)
    for rid, split in zip(table["id"], table["split"]):
        by_traj[id_prefix(rid)].add(split)
    return by_traj


def test_split_command_warns_then_follows_the_suggestion(traj_store, capsys):
    assert main(["split", str(traj_store.path), "--no-cluster", "--seed", "2"]) == 0
    cap = capsys.readouterr()
    assert "omni-data split: warning: dataset 'md' is grouped by 'id'" in cap.err
    assert "re-run with --group-key source_file" in cap.err
    assert "note: dataset 'md' has no manifest and its records carry no group" in cap.out
    assert any(len(s) > 1 for s in _groups_by_split(traj_store.path).values())  # trajectories straddle
    [warning] = Store(traj_store.path).catalog.sections["splits"]["warnings"]
    assert f"omni-data split: warning: {warning}\n" == cap.err
    assert main(["split", str(traj_store.path), "--no-cluster", "--seed", "2", "--group-key", "source_file"]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and "dataset md grouped by source_file (--group-key)" in cap.out
    by_traj = _groups_by_split(traj_store.path)
    assert len(by_traj) == 6 and all(len(s) == 1 for s in by_traj.values())
    assert Store(traj_store.path).catalog.sections["splits"]["warnings"] == []


def test_report_shows_the_split_warning(traj_store, tmp_path, capsys):
    import html

    assert main(["split", str(traj_store.path), "--no-cluster"]) == 0
    [warning] = Store(traj_store.path).catalog.sections["splits"]["warnings"]
    assert main(["report", str(traj_store.path), "--out", str(tmp_path / "r"), "--no-cluster"]) == 0
    page = html.unescape((tmp_path / "r" / "report.html").read_text())
    assert f'<p class="warn">{traj_store.path}: {warning}</p>' in page


def test_split_command_uses_metadata_group(tmp_path, capsys):
    recs = [r for k in range(5) for r in trajectory(k, 6, seed=50 + k, trajectory_id=f"t{k}")]
    store = make_store(tmp_path / "s", {"a": recs})
    assert main(["split", str(store.path), "--no-cluster"]) == 0
    cap = capsys.readouterr()
    assert cap.err == ""
    assert "grouping by the 'metadata.trajectory_id' its records carry" in cap.out
    table = split_labels(Store(store.path)).to_pydict()
    assert sorted(set(table["group"])) == [f"t{k}" for k in range(5)]
    assert all(len(s) == 1 for s in _groups_by_split(store.path).values())


def test_split_command_bad_group_key_is_one_line(traj_store, capsys):
    assert main(["split", str(traj_store.path), "--no-cluster", "--group-key", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "group key 'nope' (--group-key) does not apply" in err
    assert err.endswith("; pass --group-key with a key its records have\n")


def test_manifest_key_missing_from_records_is_refused_before_work(tmp_path, capsys):
    # a user's own file ingested under the name of a known dataset whose manifest groups by smiles
    recs = [dataclasses.replace(r, dataset="spice") for r in trajectory(0, 4, seed=70)]
    store = make_store(tmp_path / "s", {"a": recs})
    assert G.manifest_group_keys(["spice", "md"]) == {"spice": "smiles"}
    assert main(["split", str(store.path), "--no-cluster"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("omni-data split: error: dataset 'spice': group key 'smiles' (manifest) does not apply")
    assert "splits" not in Store(store.path).catalog.sections


def test_one_long_real_trajectory_suggests_frame_blocks(shared_data, tmp_path, capsys):
    # MD17 ethanol: 2000 frames of one molecule's MD in one file; no file, id or formula key
    # separates them, so time blocks of 100 frames are suggested
    import ase.io

    from tests.harmonize.conftest import atoms_record

    frames = ase.io.read(shared_data / "extxyz/schnetpack_md17_ethanol_2000frames_kcalmol.extxyz", index=":")
    recs = [atoms_record(a, "ccsd", "eth", i, source_file="ethanol.extxyz") for i, a in enumerate(frames)]
    store = make_store(tmp_path / "s", {"a": recs[:1000], "b": recs[1000:]})
    g = G.plan_groups(store, manifest_keys={}).datasets["eth"]
    assert g.sampled == 800 and g.score.pairs == 798 and g.leaks  # 400 per shard, two runs
    assert g.suggestion == G.KeyScore("frame_block", 8, 100 / 800, 6, 798)
    assert main(["split", str(store.path), "--no-cluster", "--group-key", "frame_block"]) == 0
    assert capsys.readouterr().err == ""
    table = split_labels(Store(store.path)).to_pydict()
    blocks: dict[str, set[str]] = defaultdict(set)
    for group, split in zip(table["group"], table["split"]):
        blocks[group].add(split)
    assert sorted(blocks) == sorted(f"ethanol.extxyz:{k}" for k in range(20))
    assert all(len(s) == 1 for s in blocks.values())


def test_one_short_trajectory_has_no_better_key_and_says_so(tmp_path):
    store = make_store(tmp_path / "s", {"a": trajectory(0, 12, seed=80)})
    plan = G.plan_groups(store, manifest_keys={})
    g = plan.datasets["md"]
    assert g.leaks and g.suggestion is None and g.score.split_pairs == 11
    [warning] = plan.warnings()
    assert warning.endswith(
        "; no key tried (source_file, id_prefix, formula, frame_block) keeps them "
        "together with 3+ groups: pass --group-key with a field that names the "
        "trajectory (metadata.NAME), or ingest with a manifest that sets group_key"
    )
