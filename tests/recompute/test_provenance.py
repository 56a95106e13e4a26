"""Provenance on every bridge record and job history across re-emits (issue 19, items 2 and 4)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from ase.io import read

from omni_data.recompute import jobs
from omni_data.recompute.collect import collect, collect_to_store
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.protocols import list_protocols, load_raw, protocol_sha256, resolved_yaml
from omni_data.safeio import safe_name
from omni_data.schema import Record

# sha256 of each shipped protocol's resolved YAML (PARENT merged, keys sorted). Like pymatgen's
# pinned input-set hashes: a change to what a protocol asks for must be a deliberate edit here.
PINNED = {
    "gfn1-xtb": "03e9d45a2fd8ef57c4dd27f6bc2d33d67aff320b3f57ec0a9321e8f126a87026",
    "gfn2-xtb": "8061691f1112d81de0776df87c7a65663e73defe33229644bca1573ba696e07d",
    "mp-pbe-static": "beb45500dbca7d0840be2c2798f830fa336c8db4be050e6164956ac06e0e2436",
    "pyscf-pbe-def2svp": "13e8637d1d4fda74f823ef14a28033fa587a8043cf155270d7e855c61d0490e0",
    "r2scan-static": "dae49cca801b7269dc20cbdde90764af6a5ee82179e1d9cf2896d548a13bbfe8",
    "vasp-base": "be1e5fa37e5d3a4abf5bf586055728420166520b1df75f89b335621a8171099a",
}
NACL = "custodian_lobster_v51_static_nonspin.vasprun.xml"
NACL_PROTOCOL = "PARENT: mp-pbe-static\nvasp:\n  incar: {ENCUT: 500, ISPIN: 1, EDIFF: 1.0e-6}\n"


def test_protocol_hashes_are_pinned() -> None:
    assert {n: protocol_sha256(n) for n in list_protocols()} == PINNED


def test_hash_covers_parents_not_comments(tmp_path: Path) -> None:
    child = tmp_path / "child.yaml"
    child.write_text("PARENT: mp-pbe-static\nvasp:\n  incar: {ENCUT: 500}\n")
    data, _ = load_raw(child)
    assert data["vasp"]["input_set"] == "MPStaticSet"  # from the parent, so inside the hash
    expect = hashlib.sha256(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()
    assert protocol_sha256(child) == expect and resolved_yaml(child) == yaml.safe_dump(data, sort_keys=True)
    first = protocol_sha256(child)
    child.write_text("# a comment\nvasp:\n  incar: {ENCUT: 500}\nPARENT: mp-pbe-static\n")
    assert protocol_sha256(child) == first
    child.write_text("PARENT: mp-pbe-static\nvasp:\n  incar: {ENCUT: 520}\n")
    assert protocol_sha256(child) != first


def nacl_job(shared_data: Path, root: Path, protocol: Path) -> Path:
    atoms = read(shared_data / "vasp" / NACL, index=0)
    rec = Record(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        pbc=atoms.pbc,
        id="mpa:NaCl",
        dataset="mpa",
        task="mpa",
    )
    from omni_data.recompute.protocols import load_protocol

    emit_records(
        [(rec, Source(rec.id, source_task="mpa", dataset="mptrj", store="/stores/src"))], load_protocol(protocol), root
    )
    job = root / safe_name(rec.id)
    shutil.copy(shared_data / "vasp" / NACL, job / "vasprun.xml")
    jobs.mark_done(job)
    return job


def test_bridge_record_provenance_and_export(shared_data: Path, tmp_path: Path) -> None:
    from ase.io import read as ase_read

    from omni_data.export import export_aselmdb, export_extxyz
    from omni_data.store import Store

    (tmp_path / "nacl.yaml").write_text(NACL_PROTOCOL)
    job = nacl_job(shared_data, tmp_path / "jobs", tmp_path / "nacl.yaml")
    found, _ = collect_to_store(tmp_path / "jobs", tmp_path / "store")
    assert not found.rejected
    rec = Store(tmp_path / "store").get("bridge:nacl/mpa:NaCl")
    meta = rec.metadata
    assert meta["source_id"] == "mpa:NaCl" and meta["source_task"] == "mpa" and meta["source_dataset"] == "mptrj"
    assert meta["source_store"] == "/stores/src" and meta["protocol"] == "nacl"
    assert meta["protocol_sha256"] == protocol_sha256(tmp_path / "nacl.yaml") == jobs.read_job(job)["protocol_sha256"]
    assert meta["code_version"] == "VASP 5.4.4.18Apr17-6-g9f103f2a35"  # <generator> of the file
    assert meta["input_writer"].startswith("pymatgen ") and meta["omni_version"]
    assert meta["job_dir"] == str(job.resolve()) and meta["job_attempts"] == 1
    export_extxyz(Store(tmp_path / "store"), tmp_path / "out.extxyz")
    info = ase_read(tmp_path / "out.extxyz").info
    for key in ("source_id", "protocol", "protocol_sha256", "code_version", "job_dir"):
        assert info[key] == meta[key], key
    export_aselmdb(Store(tmp_path / "store"), tmp_path / "out.aselmdb")
    import ase.db

    row = next(ase.db.connect(str(tmp_path / "out.aselmdb")).select())
    assert row.key_value_pairs["protocol_sha256"] == meta["protocol_sha256"]
    assert row.key_value_pairs["source_task"] == "mpa" and row.key_value_pairs["code_version"] == meta["code_version"]


def test_jobs_cli_shows_provenance(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from omni_data.cli.main import main

    job = nacl_job(shared_data, tmp_path / "jobs", Path("mp-pbe-static"))
    collect(tmp_path / "jobs")
    assert main(["jobs", str(tmp_path / "jobs")]) == 0
    line = capsys.readouterr().out
    assert "failed" in line and "protocol_mismatch:ENCUT 500 != 520" in line
    assert f"mp-pbe-static@{protocol_sha256('mp-pbe-static')[:12]}" in line
    assert main(["jobs", str(tmp_path / "jobs"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["protocol_sha256"] == protocol_sha256("mp-pbe-static") and row["job_dir"] == str(job.resolve())
    assert row["source_task"] == "mpa" and row["input_writer"].startswith("pymatgen ")


def test_reemit_keeps_history(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from omni_data.cli.jobs import reemit_failed
    from omni_data.cli.main import main

    root = tmp_path / "jobs"
    job = nacl_job(shared_data, root, Path("mp-pbe-static"))
    found, shard = collect_to_store(root, tmp_path / "store")
    reason = found.rejected[0].reason
    assert reason.startswith("protocol_mismatch:ENCUT 500 != 520")
    (row,) = reemit_failed(root)
    assert row["status"] == "pending" and jobs.job_state(job).state == "pending"
    assert not (job / "vasprun.xml").exists() and not (job / "FAILED").exists()
    (entry,) = jobs.read_job(job)["history"]
    assert entry["attempt"] == 1 and entry["state"] == "failed" and entry["reason"] == reason
    assert entry["quarantine_shard"] == shard and entry["failed_at"] and entry["replaced"]
    assert entry["protocol"] == "mp-pbe-static" and entry["protocol_sha256"] == protocol_sha256("mp-pbe-static")
    kept = job / entry["files"]
    assert (kept / "vasprun.xml").read_bytes() == (shared_data / "vasp" / NACL).read_bytes()
    assert (kept / "FAILED").read_text().strip() == reason
    # a second refusal and re-emit appends; nothing earlier is lost
    shutil.copy(shared_data / "vasp" / NACL, job / "vasprun.xml")
    jobs.mark_done(job)
    collect(root)
    reemit_failed(root)
    history = jobs.read_job(job)["history"]
    assert [h["attempt"] for h in history] == [1, 2] and history[0] == entry
    assert (job / "history" / "1" / "vasprun.xml").is_file() and (job / "history" / "2" / "vasprun.xml").is_file()
    assert main(["jobs", str(root)]) == 0
    assert "2 earlier attempt(s), last failed: protocol_mismatch:ENCUT 500 != 520" in capsys.readouterr().out


def test_info_shows_bridge_protocols(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from omni_data.cli.info import store_info
    from omni_data.cli.main import main

    (tmp_path / "nacl.yaml").write_text(NACL_PROTOCOL)
    nacl_job(shared_data, tmp_path / "jobs", tmp_path / "nacl.yaml")
    found, _ = collect_to_store(tmp_path / "jobs", tmp_path / "store")
    assert len(found.records) == 1
    (group,) = store_info(tmp_path / "store")["bridge_provenance"]
    sha = protocol_sha256(tmp_path / "nacl.yaml")
    assert group == {
        "protocol": "nacl",
        "protocol_sha256": sha,
        "engine": found.records[0].metadata["engine"],
        "code_version": "VASP 5.4.4.18Apr17-6-g9f103f2a35",
        "records": 1,
    }
    assert main(["info", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert f"bridge: 1 records by nacl@{sha[:12]}" in out and "VASP 5.4.4" in out
    assert "more than one protocol" not in out


def test_bridge_protocols_sum_over_shards_and_keep_versions_apart() -> None:
    from omni_data.cli.info import bridge_protocols

    g = {"protocol": "p", "engine": "vasp", "code_version": "VASP 6"}
    section = {
        "s1": [{**g, "protocol_sha256": "a" * 64, "records": 3}],
        "s2": [{**g, "protocol_sha256": "a" * 64, "records": 2}, {**g, "protocol_sha256": "b" * 64, "records": 4}],
    }
    assert [(x["protocol_sha256"][0], x["records"]) for x in bridge_protocols(section)] == [("a", 5), ("b", 4)]
