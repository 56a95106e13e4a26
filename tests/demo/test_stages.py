"""The demo's stage runner: a missing part is reported as unavailable (never faked), what needs it
is skipped with the reason, failures keep their traceback in the stage log, and a logger bound to
stderr during one stage keeps working after that stage's log file is closed."""
from __future__ import annotations

import json
import logging
import sys

import pytest

from omni_data.demo.stages import StageFailed, StageRunner, omni_data_cli, require


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


def test_cli_status_is_checked(tmp_path) -> None:
    with pytest.raises(StageFailed, match="omni-data verify .* exited with status 1"):
        omni_data_cli(["verify", tmp_path / "not-a-store"])
    assert omni_data_cli(["verify", tmp_path / "not-a-store"], ok_codes=(0, 1)) == 1
