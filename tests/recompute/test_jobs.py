"""Job dirs: state from markers, record.json round trip, clear errors for broken dirs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from omni_data.recompute import jobs
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.protocols import load_protocol
from omni_data.safeio import safe_name
from omni_data.schema import Record


@pytest.fixture()
def job(shared_data: Path, tmp_path: Path) -> Path:
    a = read(shared_data / "structures" / "cif" / "chgnet_mp-18767-LiMnO2.cif")
    rec = Record(
        numbers=a.numbers,
        positions=a.positions,
        cell=a.cell.array,
        pbc=a.pbc,
        id="mpa:mp-18767",
        dataset="mpa",
        task="mpa",
        magmoms=np.arange(len(a), dtype=float),
        charge=0.0,
        spin=None,
    )
    emit_records([(rec, Source(rec.id))], load_protocol("mp-pbe-static"), tmp_path)
    return tmp_path / safe_name(rec.id)


def test_state_precedence(job: Path, shared_data: Path) -> None:
    assert jobs.job_state(job).state == "pending"
    shutil.copy(shared_data / "vasp" / "custodian_bad_vasprun_truncated_ggau.vasprun.xml", job / "vasprun.xml")
    assert jobs.job_state(job).state == "pending"  # an open vasprun.xml is not a finished run
    shutil.copy(shared_data / "vasp" / "custodian_lobster_v51_static_nonspin.vasprun.xml", job / "vasprun.xml")
    assert jobs.job_state(job).state == "done"  # closed vasprun.xml without markers (run by hand)
    jobs.mark_running(job)
    assert jobs.job_state(job).state == "running"
    jobs.mark_done(job)
    assert jobs.job_state(job).state == "done" and not (job / "RUNNING").exists()
    jobs.mark_failed(job, "run:boom\nsecond line")
    state = jobs.job_state(job)
    assert state.state == "failed" and state.reason == "run:boom second line" and not (job / "DONE").exists()
    jobs.clear_markers(job)
    assert jobs.job_state(job).state == "done"  # back to the vasprun.xml verdict


def test_record_json_round_trip(job: Path, shared_data: Path) -> None:
    a = read(shared_data / "structures" / "cif" / "chgnet_mp-18767-LiMnO2.cif")
    back = jobs.read_record(job)
    assert back.id == "mpa:mp-18767" and (back.numbers == a.numbers).all()
    assert np.allclose(back.positions, a.positions) and np.allclose(back.cell, a.cell.array)
    assert back.pbc.all() and back.charge == 0.0 and back.spin is None
    assert np.allclose(back.magmoms, np.arange(len(a)))


def test_broken_dirs_name_the_file(job: Path, tmp_path: Path) -> None:
    (job / "job.json").write_text("{not json")
    with pytest.raises(ValueError, match="job.json"):
        jobs.job_state(job)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(jobs.iter_job_dirs(tmp_path / "nope"))
    (job / "record.json").unlink()
    with pytest.raises(ValueError, match="record.json"):
        jobs.read_record(job)
