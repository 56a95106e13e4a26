"""The demo's stage runner: a missing part is reported as unavailable (never faked), what needs it
is skipped with the reason, failures keep their traceback in the stage log, a logger bound to
stderr during one stage keeps working after that stage's log file is closed, and the ledger makes
a re-run reuse what finished on the same inputs (issue 22, item 4)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from omni_model.demo.ledger import StageLedger
from omni_model.demo.stages import StageRunner, require


def test_unavailable_failed_and_skipped_are_reported(tmp_path) -> None:
    echoed: list[str] = []
    runner = StageRunner(tmp_path / "logs", tmp_path / "stages.json", echo=echoed.append)

    def missing() -> None:
        require("omni_data.no_such_part")

    def broken() -> None:
        print("about to fail")
        raise ZeroDivisionError("boom")

    runner.run("a", lambda: {"x": 1})
    runner.run("b", missing, needs=["a"])
    runner.run("c", lambda: None, needs=["b"])
    runner.run("d", broken, needs=["a"])
    record = json.loads((tmp_path / "stages.json").read_text())
    assert [record[k]["status"] for k in "abcd"] == ["ok", "unavailable", "skipped", "failed"]
    assert record["a"]["outputs"] == {"x": 1}
    assert "omni_data.no_such_part is not available" in record["b"]["detail"]
    assert record["c"]["detail"] == "needs b: unavailable"
    log = (tmp_path / "logs" / "d.log").read_text()
    assert "about to fail" in log and "ZeroDivisionError: boom" in log
    assert str(tmp_path / "logs" / "d.log") in record["d"]["detail"]
    assert len(echoed) == 4 and "unavailable" in echoed[1]


def test_a_handler_bound_in_one_stage_writes_to_the_next_stage_log(tmp_path) -> None:
    runner = StageRunner(tmp_path / "logs", tmp_path / "stages.json", echo=lambda _: None)
    logger = logging.getLogger("omni-demo-test")
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def bind() -> None:  # like logging.basicConfig inside omni-train's main()
        logger.addHandler(logging.StreamHandler(sys.stderr))
        logger.info("first stage")

    try:
        runner.run("one", bind)
        runner.run("two", lambda: logger.info("second stage"))
    finally:
        logger.handlers.clear()
    assert "first stage" in (tmp_path / "logs" / "one.log").read_text()
    assert "second stage" in (tmp_path / "logs" / "two.log").read_text()
    assert runner.results["two"].status == "ok"


def test_a_finished_stage_is_reused_and_what_reads_it_too(tmp_path) -> None:
    calls: list[str] = []

    def stage(name: str, out: Path | None = None):
        def fn() -> dict:
            calls.append(name)
            if out is not None:
                out.write_text(name)
            return {"n": len(calls)}

        return fn

    def demo(opt: int) -> StageRunner:
        runner = StageRunner(tmp_path / "logs", tmp_path / "stages.json", echo=lambda _: None)
        runner.run("a", stage("a", tmp_path / "a.txt"), options={"opt": opt}, owns=[tmp_path / "a.txt"])
        runner.run("b", stage("b"), needs=["a"])
        runner.run("c", stage("c"))  # reads nothing: reused whatever a does
        return runner

    first = demo(1)
    assert calls == ["a", "b", "c"] and not any(r.reused for r in first.results.values())
    again = demo(1)
    assert calls == ["a", "b", "c"]  # nothing ran again
    assert all(r.reused and r.status == "ok" for r in again.results.values())
    assert again.results["b"].outputs == {"n": 2}  # the outputs of the run that made them
    demo(2)  # a's option changed: a and what reads it run again, c does not
    assert calls == ["a", "b", "c", "a", "b"]
    (tmp_path / "a.txt").unlink()  # an output gone: a runs again (same options), and so does b
    demo(2)
    assert calls == ["a", "b", "c", "a", "b", "a", "b"]
    assert json.loads((tmp_path / "ledger.json").read_text())["stages"]["a"]["state"] == "done"


def test_an_interrupted_stage_runs_again_and_only_a_resumable_one_keeps_its_outputs(tmp_path) -> None:
    owned = {"plain": tmp_path / "plain", "resumable": tmp_path / "resumable"}
    seen: dict[str, bool] = {}

    def fn(name: str, interrupt: bool):
        def run() -> None:
            seen[name] = (owned[name] / "partial").exists()
            owned[name].mkdir(exist_ok=True)
            (owned[name] / "partial").write_text("half done")
            if interrupt:
                raise KeyboardInterrupt

        return run

    for interrupt in (True, False):
        runner = StageRunner(tmp_path / "logs", tmp_path / "stages.json", echo=lambda _: None)
        for name, path in owned.items():
            try:
                runner.run(name, fn(name, interrupt), owns=[path], resumable=name == "resumable")
            except KeyboardInterrupt:
                pass
        ledger = StageLedger(tmp_path / "ledger.json")
        states = {name: ledger.get(name).state for name in owned}
        assert states == (
            {"plain": "running", "resumable": "running"} if interrupt else {"plain": "done", "resumable": "done"}
        )
    # the re-run: the plain stage started from nothing, the resumable one found its partial work
    assert seen == {"plain": False, "resumable": True}


def test_a_failed_stage_is_recorded_and_runs_again(tmp_path) -> None:
    attempts: list[int] = []

    def flaky() -> dict:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return {"ok": True}

    for expected in ("failed", "ok"):
        runner = StageRunner(tmp_path / "logs", tmp_path / "stages.json", echo=lambda _: None)
        assert runner.run("flaky", flaky).status == expected
        assert runner.run("after", lambda: None, needs=["flaky"]).status == (
            "skipped" if expected == "failed" else "ok"
        )
    assert len(attempts) == 2
    assert StageLedger(tmp_path / "ledger.json").get("flaky").state == "done"


def test_a_damaged_ledger_is_named_with_the_way_out(tmp_path) -> None:
    (tmp_path / "ledger.json").write_text('{"version": 1, "stages": {"a": {"state": "running"')
    with pytest.raises(ValueError, match=r"ledger.json: unreadable demo ledger .* --fresh"):
        StageRunner(tmp_path / "logs", tmp_path / "stages.json", echo=lambda _: None)
    (tmp_path / "ledger.json").write_text('{"version": 1, "stages": {"a": {"state": "half"}}}')
    with pytest.raises(ValueError, match="stage 'a': malformed ledger entry"):
        StageLedger(tmp_path / "ledger.json")


def test_the_ledger_is_replaced_atomically(tmp_path, monkeypatch) -> None:
    """A crash while writing leaves the previous ledger, never a half-written one."""
    import os

    ledger = StageLedger(tmp_path / "ledger.json")
    ledger.mark("a", "f1", "done", {"x": 1}, 1.0, "t1")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        ledger.mark("b", "f2", "running")
    monkeypatch.undo()
    again = StageLedger(tmp_path / "ledger.json")
    assert list(again.entries) == ["a"] and again.is_done("a", "f1") and again.get("a").token == "t1"


def test_say_reaches_the_console_and_the_stage_log(tmp_path) -> None:
    """Training progress lines: on the console while the stage's output goes to its log, and in the log."""
    echoed: list[str] = []
    runner = StageRunner(tmp_path / "logs", tmp_path / "stages.json", echo=echoed.append)

    def stage() -> None:
        print("chatter")
        runner.say("[demo] train_plain step 5/10")

    runner.run("train_plain", stage)
    assert echoed[0] == "[demo] train_plain step 5/10" and "chatter" not in "".join(echoed)
    assert (tmp_path / "logs" / "train_plain.log").read_text() == "chatter\n[demo] train_plain step 5/10\n"


def _square(x: int, progress) -> dict:
    """A stage for ``run_parallel`` (module level: the pool pickles it by name)."""
    progress(f"squaring {x}")
    print(f"chatter of {x}")  # the stage's own output goes to its log
    if x < 0:
        raise ValueError(f"negative {x}")
    return {"y": x * x}


@pytest.mark.parametrize("workers", [1, 2])
def test_run_parallel_records_each_stage_and_a_rerun_reuses_them(tmp_path, workers) -> None:
    import functools

    from omni_model.demo.stages import ParallelStage

    echoed: list[str] = []
    runner = StageRunner(tmp_path / "logs", tmp_path / "stages.json", echo=echoed.append)
    runner.run("base", lambda: {"ok": True})
    stages = [
        ParallelStage(f"sq{x}", functools.partial(_square, x), needs=["base"], options={"x": x}) for x in (3, -1, 4)
    ]
    stages.append(ParallelStage("orphan", functools.partial(_square, 5), needs=["missing"]))
    results = runner.run_parallel(stages, workers)
    assert [r.name for r in results] == ["sq3", "sq-1", "sq4", "orphan"]  # the order asked, not of ending
    assert [r.status for r in results] == ["ok", "failed", "ok", "skipped"]
    assert results[0].outputs == {"y": 9} and results[2].outputs == {"y": 16}
    assert "ValueError: negative -1" in results[1].detail
    assert "chatter of 3" in (tmp_path / "logs" / "sq3.log").read_text()
    assert "squaring 3" in (tmp_path / "logs" / "sq3.log").read_text()
    assert "ValueError: negative -1" in (tmp_path / "logs" / "sq-1.log").read_text()
    if workers == 1:
        assert "squaring 3" in echoed  # progress lines reach the console (a child writes them there itself)
    record = json.loads((tmp_path / "stages.json").read_text())
    assert record["sq4"]["outputs"] == {"y": 16} and record["orphan"]["detail"] == "needs missing: not run"

    again = StageRunner(tmp_path / "logs", tmp_path / "stages.json", echo=echoed.append)
    again.run("base", lambda: {"ok": True})
    second = again.run_parallel(stages[:3], workers)
    assert [r.reused for r in second] == [True, False, True]  # the failed stage runs again
    assert second[0].outputs == {"y": 9}
