"""Re-running ``omni-data demo`` resumes it (issue 22, item 4): stages that finished on the same
inputs are not run again, an interrupted stage runs again (a resumable one continues its work),
a changed option re-runs what depends on it, and ``--fresh`` starts over.

``test_run_demo_*`` drive ``run_demo`` itself with counting stand-ins for the stage functions (the
full demo takes minutes); ``test_real_data_stages_*`` runs the real data stages at a tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from omni_model.demo import generate as gen
from omni_model.demo import report
from omni_model.demo import run as demo
from omni_model.demo.layout import RUNS, DemoLayout


class Interrupt(KeyboardInterrupt):
    """Ctrl-C in the middle of a stage."""


def _touch(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _rows(head: str) -> list[dict[str, Any]]:
    return [
        {
            "kind": "same-domain",
            "head": head,
            "data": f"{head} test",
            "n": 3,
            "energy_mae": 0.01,
            "energy_mae_shifted": 0.005,
            "forces_mae": 0.1,
            "stress_mae": None,
        }
    ]


@pytest.fixture
def fake_stages(monkeypatch) -> dict[str, Any]:
    """Stand-ins for every stage function: each writes its outputs and counts its calls; set
    ``state["interrupt"]`` to a stage name to press Ctrl-C inside it (once)."""
    state: dict[str, Any] = {"calls": Counter(), "interrupt": None, "found_partial": []}

    def called(name: str) -> None:
        state["calls"][name] += 1
        if state["interrupt"] == name:
            state["interrupt"] = None
            raise Interrupt()

    def generate(root: Path, size: str, seed: int, workers: int) -> dict[str, gen.Database]:
        called("generate")
        dbs = {}
        for f in gen.FAMILIES:
            for split in gen.SPLITS:
                _touch(root / "sources" / split / f"{f}.src", f"seed {seed}")
            _touch(root / "manifests" / f"demo-{f}.yaml")
            dbs[f] = gen.Database(
                f,
                str(root / "manifests" / f"demo-{f}.yaml"),
                {s: str(root / "sources" / s / f"{f}.src") for s in gen.SPLITS},
                {"train": 2, "test": 1},
                "m",
            )
        _touch(root / "generation.json", "{}")
        return dbs

    def ingest(lay: DemoLayout, dbs: dict, workers: int) -> dict:
        called("ingest")
        assert set(dbs) == set(gen.FAMILIES)  # the databases, also when generate was reused
        for name in ("train", "test"):
            _touch(lay.store(name) / "catalog.json")
        return {"train": {"records": 6}}

    def references(lay: DemoLayout, store: str, workers: int) -> dict:
        called(f"references:{store}")
        return {"metals": {"elements": [29]}}

    def select(lay: DemoLayout, size: str, workers: int, seed: int) -> dict:
        called("select")
        for name in ("bridge", "truth"):
            _touch(lay.selection(name) / "selection.parquet")
        return {"bridge": {"metals": 1}}

    def recompute(lay: DemoLayout, dbs: dict, workers: int, calibration: float) -> dict:
        state["found_partial"].append((lay.jobs("bridge") / "job-0" / "DONE").exists())
        _touch(lay.jobs("bridge") / "job-0" / "DONE")  # the first job finished before any interrupt
        called("recompute")
        for name in ("train_bridge", "test_truth"):
            _touch(lay.store(name) / "catalog.json")
        _touch(lay.jobs("truth") / "job-0" / "DONE")
        return {"bridge": {"selected": 1, "collected": 1, "quarantined": 0}}

    def train(
        lay: DemoLayout,
        run: str,
        size: str,
        seed: int,
        k: int = 0,
        resume: bool = False,
        progress=None,
        label: str = "",
        **kw,
    ) -> dict:
        called(f"train:{run}:{k}")
        folder = demo.run_dir(lay, run, k)
        _touch(folder / "final.pt")
        return {"checkpoint": str(folder / "final.pt"), "loss": [[1, 2.0], [2, 1.0]]}

    def evaluate(lay: DemoLayout, run: str, checkpoint: str, with_truth: bool) -> dict:
        called(f"evaluate:{run}")
        assert Path(checkpoint).is_file()
        return {"rows": _rows("metals")}

    monkeypatch.setattr(gen, "generate", generate)
    for name, fn in (
        ("stage_ingest", ingest),
        ("stage_references", references),
        ("stage_select", select),
        ("stage_recompute", recompute),
        ("stage_train", train),
        ("stage_evaluate", evaluate),
    ):
        monkeypatch.setattr(demo, name, fn)
    monkeypatch.setattr(report, "plot", lambda metrics, path: _touch(Path(path), "png"))
    return state


ALL = Counter(
    {
        "generate": 1,
        "ingest": 1,
        "references:train": 1,
        "select": 1,
        "recompute": 1,
        "references:train_bridge": 1,
        **{f"train:{r}:0": 1 for r in RUNS},
        **{f"evaluate:{r}": 1 for r in RUNS},
    }
)


def _mtimes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.parts[-1] not in ("stages.json", "ledger.json", "metrics.json")
        and "logs" not in p.relative_to(root).parts
        and not p.name.startswith("results")
    }


def test_run_demo_resumes_after_ctrl_c_without_redoing_finished_stages(tmp_path, fake_stages) -> None:
    out = tmp_path / "demo"
    fake_stages["interrupt"] = "recompute"
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(out, size="ci")
    assert fake_stages["calls"] == Counter(
        {"generate": 1, "ingest": 1, "references:train": 1, "select": 1, "recompute": 1}
    )
    ledger = json.loads((out / "ledger.json").read_text())["stages"]
    assert {k: v["state"] for k, v in ledger.items()} == {
        "generate": "done",
        "ingest": "done",
        "references": "done",
        "select": "done",
        "recompute": "running",
    }
    before = _mtimes(out)

    results = demo.run_demo(out, size="ci")  # the same command again
    assert all(r["status"] == "ok" for r in results.values()), results
    assert fake_stages["calls"] == ALL + Counter({"recompute": 1})  # only recompute ran twice
    assert [k for k, r in results.items() if r["reused"]] == ["generate", "ingest", "references", "select"]
    assert fake_stages["found_partial"] == [False, True]  # recompute resumed in its own folder
    after = _mtimes(out)
    for path in before:  # what the finished stages wrote was not touched
        if not path.startswith(
            ("recompute/bridge/jobs", "recompute/truth", "stores/train_bridge", "stores/test_truth")
        ):
            assert after[path] == before[path], path
    assert (out / "results.txt").is_file() and json.loads((out / "metrics.json").read_text()).keys() == set(RUNS)


def test_run_demo_third_time_runs_nothing_and_a_changed_option_reruns_what_depends_on_it(tmp_path, fake_stages) -> None:
    out = tmp_path / "demo"
    demo.run_demo(out, size="ci")
    assert fake_stages["calls"] == ALL
    again = demo.run_demo(out, size="ci")
    assert fake_stages["calls"] == ALL and all(r["reused"] for r in again.values())
    assert json.loads((out / "metrics.json").read_text()).keys() == set(RUNS)  # rebuilt from the ledger

    demo.run_demo(out, size="ci", seeds=2)  # one more training seed per run: only the new stages run
    assert fake_stages["calls"] == ALL + Counter({f"train:{r}:1": 1 for r in RUNS}) + Counter(
        {f"evaluate:{r}": 1 for r in RUNS}
    )

    demo.run_demo(out, size="ci", seed=1)  # another seed changes the data: everything runs again
    assert fake_stages["calls"]["generate"] == 2 and fake_stages["calls"]["train:plain:0"] == 2
    assert (out / "sources" / "train" / "metals.src").read_text() == "seed 1"


def test_run_demo_reruns_from_a_deleted_output_and_fresh_starts_over(tmp_path, fake_stages) -> None:
    out = tmp_path / "demo"
    demo.run_demo(out, size="ci")
    import shutil

    shutil.rmtree(out / "stores" / "test_truth")  # recompute's output is gone
    demo.run_demo(out, size="ci")
    calls = fake_stages["calls"]
    assert calls["generate"] == calls["select"] == calls["train:plain:0"] == 1
    # recompute and everything that reads it ran again: the bridge references, the bridged
    # training, and every evaluation (the cross-domain rows read the recomputed truth)
    assert calls["recompute"] == calls["references:train_bridge"] == calls["train:bridged:0"] == 2
    assert all(calls[f"evaluate:{r}"] == 2 for r in RUNS)

    (out / "runs" / "plain" / "stale").write_text("from before")
    demo.run_demo(out, size="ci", fresh=True)
    assert fake_stages["calls"]["generate"] == 2 and fake_stages["calls"]["train:plain:0"] == 2
    assert not (out / "runs" / "plain" / "stale").exists()


def test_cli_offers_fresh_and_resumes_by_default() -> None:
    import argparse

    from omni_data.cli import demo as demo_cli

    parser = argparse.ArgumentParser()
    demo_cli.add_arguments(parser)
    assert parser.parse_args([]).fresh is False and parser.parse_args(["--fresh"]).fresh is True


# --- the real data stages at a tiny size ------------------------------------------------------------

TINY = gen.DemoSize("tiny", metals=(3, 2), crystals=(3, 2), molecules=(1, 1), n_molecules=3)


@pytest.mark.slow
def test_real_data_stages_resume_after_an_interrupted_recompute(tmp_path, monkeypatch, optional) -> None:
    """generate -> ingest -> references -> select -> recompute for real; Ctrl-C after the bridge
    was recomputed and collected, two of the held-out structures' GFN1-xTB jobs ran and a third
    was running; the re-run (a new process) reuses the first four stages (their files untouched),
    runs only the jobs left, the one left RUNNING included, collects nothing twice, and the stores
    hold every structure once."""
    optional("tblite", "dft")
    from omni_data.recompute import jobs, local
    from omni_data.store import Store
    from omni_model.demo import data_stages
    from omni_model.demo.stages import StageRunner

    monkeypatch.setitem(gen.SIZES, "tiny", TINY)
    monkeypatch.setitem(data_stages.BRIDGE_FRACTION, "tiny", 0.7)
    monkeypatch.setitem(data_stages.CALIBRATION_FRACTION, "tiny", 0.5)
    jobs_run: list[str] = []
    real_run_job = local.run_job

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # the pid of the demo process that Ctrl-C ended

    def counting_run_job(job_dir, *args, **kwargs):
        if sum("truth" in Path(j).parts for j in jobs_run) == 2 and not counting_run_job.resumed:
            # Ctrl-C mid-calculation: the job stays RUNNING, marked by the process that is gone
            jobs.mark_running(Path(job_dir))
            marker = Path(job_dir) / "RUNNING"
            marker.write_text(marker.read_text().replace(f"pid {os.getpid()} ", f"pid {dead.pid} "))
            assert jobs.stale_reason(Path(job_dir), marker.read_text()) is not None
            raise Interrupt()
        jobs_run.append(str(job_dir))
        return real_run_job(job_dir, *args, **kwargs)

    counting_run_job.resumed = False
    monkeypatch.setattr(local, "run_job", counting_run_job)
    lay = DemoLayout(tmp_path / "demo")
    lay.root.mkdir()

    def data_stages_once() -> StageRunner:
        runner = StageRunner(lay.logs, lay.stages_json, echo=lambda _: None, ledger=lay.ledger_json)
        demo._data_stages(runner, lay, "tiny", 1, 0)
        return runner

    with pytest.raises(KeyboardInterrupt):
        data_stages_once()
    done_before = list(jobs_run)
    n_bridge_jobs = sum("bridge" in Path(j).parts for j in done_before)
    assert n_bridge_jobs > 0 and len(done_before) == n_bridge_jobs + 2
    kept = {
        p: p.stat().st_mtime_ns
        for d in (lay.sources, lay.store("train"), lay.store("test"), lay.selection("bridge"))
        for p in d.rglob("*")
        if p.is_file()
    }
    counting_run_job.resumed = True

    runner = data_stages_once()
    assert {k: (r.status, r.reused) for k, r in runner.results.items()} == {
        "generate": ("ok", True),
        "ingest": ("ok", True),
        "references": ("ok", True),
        "select": ("ok", True),
        "recompute": ("ok", False),
        "references_bridge": ("ok", False),
    }
    for path, mtime in kept.items():
        if "select" not in path.parts:  # describe sidecars are not rewritten either
            assert path.stat().st_mtime_ns == mtime, path
    out = runner.results["recompute"].outputs
    selected = out["bridge"]["selected"] + out["truth"]["selected"]
    assert len(jobs_run) == selected == len(set(jobs_run))  # no finished job ran again
    assert out["bridge"]["selected"] == n_bridge_jobs
    train, bridged, test, truth = (Store(lay.store(n)) for n in ("train", "train_bridge", "test", "test_truth"))
    n_bridge = out["bridge"]["collected"]
    assert n_bridge + out["bridge"]["quarantined"] == out["bridge"]["selected"] > 0
    assert len(bridged) == len(train) + n_bridge  # the training copy once, every bridge record once
    ids = bridged.table(["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids))
    assert len(truth) + out["truth"]["quarantined"] == len(test)
