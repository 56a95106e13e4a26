"""local.run_jobs: failures are recorded with their reason; Dask distributed workers run the jobs."""

from __future__ import annotations

from pathlib import Path

from omni_data.recompute import jobs
from omni_data.recompute.emit import Source, emit_records
from omni_data.recompute.local import run_jobs
from omni_data.recompute.protocols import load_protocol
from omni_data.safeio import safe_name
from omni_data.schema import Record


def test_failures_are_recorded_not_skipped(methane_record: Record, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("PARENT: gfn2-xtb\nmethod:\n  name: GFN2-xTB\n  options: {max_iterations: 1}\n")
    rec = methane_record
    emit_records([(rec, Source(rec.id))], load_protocol(bad), tmp_path / "jobs")
    (result,) = run_jobs(tmp_path / "jobs", str(bad))
    state = jobs.job_state(tmp_path / "jobs" / safe_name(rec.id))
    assert result["state"] == "failed" and state.state == "failed"
    assert state.reason.startswith(("unconverged:", "run:")), state.reason
    assert not (tmp_path / "jobs" / safe_name(rec.id) / "results.json").exists()


def test_dask_distributed_workers(sic_record: Record, methane_record: Record, tmp_path: Path, optional) -> None:
    optional("tblite", "dft")
    from omni_data.pipeline.cluster import ClusterConfig, dask_client

    recs = [sic_record, methane_record]
    emit_records([(r, Source(r.id)) for r in recs], load_protocol("gfn2-xtb"), tmp_path)
    with dask_client(ClusterConfig(mode="local", workers=1)) as client:
        results = run_jobs(tmp_path, client=client, threads=1)
    assert sorted(r["state"] for r in results) == ["done", "done"]
    assert run_jobs(tmp_path) == []  # nothing left to run


def test_local_methods_are_derived_from_the_protocol_files(tmp_path: Path, monkeypatch) -> None:
    """Issue 20 item 6: run-local's --method choices are every protocol a local runner can run,
    from the files and the RUNNERS table, not a hand-kept list."""
    import argparse

    from omni_data.cli.run_local import add_arguments
    from omni_data.recompute.runners import RUNNERS, local_methods

    assert local_methods() == {"gfn1-xtb": "tblite", "gfn2-xtb": "tblite", "pyscf-pbe-def2svp": "pyscf"}
    for name in ("gfn2-xtb", "pyscf-pbe-def2svp", "vasp-base", "mp-pbe-static"):
        (tmp_path / f"{name}.yaml").write_text(load_protocol_text(name))
    (tmp_path / "pyscf-pbe0.yaml").write_text(
        "PARENT: pyscf-pbe-def2svp\nmethod:\n  name: PBE0\n  options: {xc: pbe0}\n"
    )
    monkeypatch.setenv("OMNI_PROTOCOLS", str(tmp_path))
    assert local_methods() == {"gfn2-xtb": "tblite", "pyscf-pbe-def2svp": "pyscf", "pyscf-pbe0": "pyscf"}
    assert set(local_methods().values()) <= set(RUNNERS)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    (method,) = [a for a in parser._actions if a.dest == "method"]
    assert method.choices == ["gfn2-xtb", "pyscf-pbe-def2svp", "pyscf-pbe0"]


def load_protocol_text(name: str) -> str:
    from omni_data.recompute.protocols import protocol_dir

    return (protocol_dir() / f"{name}.yaml").read_text()
