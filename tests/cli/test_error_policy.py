"""One error policy for both tools (issue 20, item 2): every subcommand of ``omni-data`` and
``omni-train``, fed a missing path, a bad value and a wrong type, ends with one line
``PROG CMD: error: ...`` on stderr, no traceback, exit 2 for usage and 1 for runtime errors.

The commands come from the two ``COMMANDS`` tables, so a new command is driven too: its
missing-path and wrong-type cases are derived from its parser, and ``BAD_VALUE`` must name it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from omni_data.cli import main as data_cli
from omni_data.cli.errors import OneLineParser, exit_status
from omni_data.store import write_shard
from omni_data.store.testing import emt_records
from omni_model import cli as train_cli

TOOLS: dict[str, Callable[[list[str]], int]] = {"omni-data": data_cli.main, "omni-train": train_cli.main}
ALL = [("omni-data", name) for name in data_cli.COMMANDS] + [("omni-train", name) for name in train_cli.COMMANDS]
IDS = [f"{tool}-{name}" for tool, name in ALL]
USAGE, RUNTIME = 2, 1


def command_parser(tool: str, name: str) -> argparse.ArgumentParser:
    """The parser ``main`` builds for one command."""
    parser = OneLineParser(prog=f"{tool} {name}")
    if tool == "omni-data":
        importlib.import_module(data_cli.COMMANDS[name][0]).add_arguments(parser)
    else:
        train_cli.COMMANDS[name][0](parser)
    return parser


# values for required options that are not the path under test
REQUIRED = {"--protocol": "gfn1-xtb", "--manifest": "mad", "--count": "1", "--fraction": "0.5"}
# options that complete a command line so it reaches the path (ingest of a plain path needs both)
EXTRA = {("omni-data", "ingest"): ["--dataset", "d", "--task", "t"]}


def missing_path_argv(tool: str, name: str, tmp: Path) -> list[str]:
    """Every positional argument a path that does not exist; required options a usable value."""
    parser = command_parser(tool, name)
    argv = [name]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:
            argv.append(str(tmp / "missing" / action.dest))
        elif action.required:
            option = action.option_strings[0]
            value = REQUIRED.get(option) or (action.choices[0] if action.choices else str(tmp / "out" / action.dest))
            argv += [option, value]
    for group in parser._mutually_exclusive_groups:
        if group.required:
            option = group._group_actions[0].option_strings[0]
            argv += [option, REQUIRED[option]]
    if "--no-cluster" in parser._option_string_actions:
        argv.append("--no-cluster")
    return argv + EXTRA.get((tool, name), [])


def _shared_options() -> set[str]:
    """The cluster and batch-script options many commands share (their own options come first)."""
    from omni_data.cli.jobs import add_batch_arguments
    from omni_data.pipeline.cluster import add_cluster_arguments

    cluster, batch = argparse.ArgumentParser(), argparse.ArgumentParser()
    add_cluster_arguments(cluster)
    add_batch_arguments(batch)
    return set(cluster._option_string_actions) | set(batch._option_string_actions)


SHARED_OPTIONS = _shared_options()


def wrong_type_argv(tool: str, name: str, tmp: Path) -> tuple[list[str], str]:
    """The missing-path line plus a word where the command takes a number (its own option first,
    then a shared one); a command without numbers gets a bad choice or an unknown option."""
    parser = command_parser(tool, name)
    argv = missing_path_argv(tool, name, tmp)
    actions = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    own = [a for a in actions if not set(a.option_strings) & SHARED_OPTIONS]
    for action in own + actions:
        if action.type in (int, float) or getattr(action.type, "__name__", "") in ("int", "float"):
            words = action.nargs if isinstance(action.nargs, int) else 1
            return argv + [action.option_strings[0], *["many"] * words], "invalid"
    for action in actions:
        if action.choices:
            return argv + [action.option_strings[0], "no-such-choice"], "invalid choice"
    return argv + ["--no-such-option"], "unrecognized arguments"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A real 6-record store, a store with a damaged catalog, an empty jobs dir, a plain file."""
    root = tmp_path_factory.mktemp("inputs")
    write_shard(root / "store", "part-0", emt_records(6, seed=1))
    (root / "damaged").mkdir()
    (root / "damaged" / "catalog.json").write_text("{", encoding="utf-8")
    (root / "jobs").mkdir()
    (root / "file.txt").write_text("not a folder\n", encoding="utf-8")
    (root / "bad.yaml").write_text("optim:\n  learning_rate: 1\n", encoding="utf-8")
    (root / "sources.yaml").write_text("omat24: [unclosed\n", encoding="utf-8")
    return root


# command -> (argv after the command name, expected status, words of the message); {x} = inputs/x
BAD_VALUE: dict[tuple[str, str], tuple[list[str], int, str]] = {
    ("omni-data", "ingest"): (
        ["{store}", "--dataset", "d", "--task", "t", "--out", "{out}", "--shard-size", "0"],
        USAGE,
        "--shard-size must be >= 1",
    ),
    ("omni-data", "info"): (["{damaged}"], RUNTIME, "catalog is not valid JSON"),
    ("omni-data", "export"): (["{store}", "--format", "aselmdb", "--out", "{out}.txt"], USAGE, "must end in .aselmdb"),
    ("omni-data", "verify"): (["{file.txt}"], RUNTIME, "not a store"),
    ("omni-data", "index"): (["{damaged}", "--no-progress"], RUNTIME, "catalog is not valid JSON"),
    ("omni-data", "convert-store"): (["{store}", "{out}"], USAGE, "already store format 2"),
    ("omni-data", "datasets"): (["--json"], USAGE, "not valid YAML"),  # with $OMNI_SOURCES = sources.yaml
    ("omni-data", "download"): (["no-such-dataset", "--out", "{out}"], USAGE, "no such manifest"),
    ("omni-data", "references"): (["{store}", "--ridge", "-1", "--no-cluster"], USAGE, "ridge must be >= 0"),
    ("omni-data", "filter"): (["{store}", "--manifest", "no-such-dataset", "--no-cluster"], USAGE, "no such manifest"),
    ("omni-data", "dedup"): (["{store}", "--tol", "0", "--no-cluster"], USAGE, "--tol: must be a number > 0"),
    ("omni-data", "split"): (
        ["{store}", "--fractions", "0.5", "0.5", "0.5", "--no-cluster"],
        USAGE,
        "fractions must be three numbers",
    ),
    ("omni-data", "pairs"): (["{store}", "--ridge", "-1"], USAGE, "--ridge: must be a number >= 0"),
    ("omni-data", "report"): (
        ["{store}", "--out", "{file.txt}", "--no-cluster"],
        USAGE,
        "file.txt is a file, not a folder",
    ),
    ("omni-data", "describe"): (["{store}", "--cutoff", "-1", "--no-cluster"], USAGE, "--cutoff: must be a number > 0"),
    ("omni-data", "select-bridge"): (
        ["{store}", "--fraction", "2", "--out", "{out}"],
        USAGE,
        "fraction must be in (0, 1], got 2.0",
    ),
    ("omni-data", "emit-jobs"): (
        ["{store}", "--protocol", "no-such-protocol", "--out", "{out}"],
        USAGE,
        "no such protocol",
    ),
    ("omni-data", "run-local"): (
        ["{jobs}", "--threads-per-job", "0", "--no-cluster"],
        USAGE,
        "--threads-per-job: must be a number >= 1",
    ),
    ("omni-data", "collect-bridge"): (
        ["{file.txt}", "--out", "{out}"],
        RUNTIME,
        "file.txt: jobs directory is not a folder",
    ),
    ("omni-data", "jobs"): (["{file.txt}"], RUNTIME, "file.txt: jobs directory is not a folder"),
    ("omni-data", "demo"): (["--workers", "0", "--out", "{out}"], USAGE, "--workers: must be a number >= 1"),
    ("omni-data", "manifest"): (["draft", "{file.txt}", "--records", "0"], USAGE, "--records must be >= 1"),
    ("omni-train", "train"): (["{bad.yaml}"], USAGE, "optim.learning_rate"),
    ("omni-train", "evaluate"): (["{store}", "{store}", "--threads", "0"], USAGE, "--threads: must be a number >= 1"),
    ("omni-train", "preset"): (["no-such-preset"], USAGE, "unknown preset 'no-such-preset'"),
}
# a missing path that names a manifest is a bad manifest name (usage); a preset takes no path
MISSING_STATUS = {("omni-data", "download"): USAGE, ("omni-train", "preset"): USAGE}


def run_in_process(tool: str, argv: list[str], capsys) -> tuple[int, str]:
    """``main(argv)`` of ``tool``: its status and stderr (stdout is dropped)."""
    capsys.readouterr()
    status = TOOLS[tool](argv)
    return status, capsys.readouterr().err


def assert_one_line(tool: str, name: str, err: str, words: str = "") -> str:
    """No traceback; the last stderr line is ``TOOL NAME: error: ...`` and holds ``words``."""
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"{tool} {name}: error: "), err
    assert words in line, line
    return line


def test_every_command_has_a_bad_value_case():
    assert set(BAD_VALUE) == set(ALL)


@pytest.mark.parametrize(("tool", "name"), ALL, ids=IDS)
def test_missing_path(tool, name, tmp_path, capsys, monkeypatch):
    argv = missing_path_argv(tool, name, tmp_path)
    if name == "datasets":  # takes no path: the manifests folder it reads is missing
        monkeypatch.setenv("OMNI_MANIFESTS", str(tmp_path / "missing"))
    if name == "demo":  # takes no path: its --out lies below a plain file
        (tmp_path / "plain").write_text("x")
        argv = ["demo", "--out", str(tmp_path / "plain" / "demo"), "--size", "ci"]
    if name == "preset":
        argv = ["preset", "no-such-preset"]
    if name == "manifest":  # its first positional is the action, then the path
        argv = ["manifest", "draft", str(tmp_path / "missing" / "file")]
    status, err = run_in_process(tool, argv, capsys)
    line = assert_one_line(tool, name, err)
    assert status == MISSING_STATUS.get((tool, name), RUNTIME), line
    if (tool, name) not in MISSING_STATUS and name != "demo":
        assert "missing" in line, line  # names the path


@pytest.mark.parametrize(("tool", "name"), ALL, ids=IDS)
def test_bad_value(tool, name, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMNI_SOURCES", str(inputs / "sources.yaml" if name == "datasets" else tmp_path / "none.yaml"))
    args, expected, words = BAD_VALUE[(tool, name)]
    paths = {"out": str(tmp_path / "out"), **{p.name: str(p) for p in inputs.iterdir()}}
    argv = [name] + [re.sub(r"\{([^}]+)\}", lambda m: paths[m.group(1)], a) for a in args]
    status, err = run_in_process(tool, argv, capsys)
    line = assert_one_line(tool, name, err, words)
    assert status == expected, line


@pytest.mark.parametrize(("tool", "name"), ALL, ids=IDS)
def test_wrong_type(tool, name, tmp_path, capsys):
    argv, words = wrong_type_argv(tool, name, tmp_path)
    status, err = run_in_process(tool, argv, capsys)
    line = assert_one_line(tool, name, err, words)
    assert status == USAGE and line.endswith(f"(see {tool} {name} --help)"), line


def _cli(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    module = {"omni-data": "omni_data.cli.main", "omni-train": "omni_model.cli"}[tool]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_issue_cases_as_subprocesses(tmp_path):
    """The two tracebacks of the issue, now one line each, through the real entry points."""
    proc = _cli("omni-data", "select-bridge", str(tmp_path), "--fraction", "2", "--out", "o", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        2,
        "omni-data select-bridge: error: fraction must be in (0, 1], got 2.0\n",
    )
    proc = _cli("omni-data", "references", "/nonexistent", "--no-cluster", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        1,
        "omni-data references: error: /nonexistent: not a store (no catalog.json)\n",
    )


def test_a_file_named_evaluate_is_not_a_config(tmp_path):
    """``omni-train evaluate`` is the command even beside a file called ``evaluate``; the
    shortcut needs an existing .yaml path."""
    (tmp_path / "evaluate").write_text("run:\n  epochs: 1\n")
    proc = _cli("omni-train", "evaluate", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "omni-train evaluate: error: the following arguments are required: "
        "checkpoint, store (see omni-train evaluate --help)"
    ]
    proc = _cli("omni-train", "missing.yaml", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (1, "omni-train: error: missing.yaml: no such config file\n")


def test_interrupt_is_one_line_and_130(capsys, monkeypatch):
    from omni_data.cli import datasets

    def interrupted() -> list[dict]:
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "rows", interrupted)
    assert data_cli.main(["datasets"]) == 130
    assert capsys.readouterr().err == "omni-data datasets: interrupted\n"  # it leaves nothing to resume


def test_a_bug_keeps_its_traceback(monkeypatch):
    """A TypeError or a plain third-party RuntimeError is not a user error: it propagates."""
    from omni_data.cli import datasets

    def broken() -> list[dict]:
        return None + 1  # type: ignore[operator]

    monkeypatch.setattr(datasets, "rows", broken)
    with pytest.raises(TypeError):
        data_cli.main(["datasets"])
    assert exit_status(RuntimeError("from torch")) is None
    assert exit_status(ValueError("from numpy")) is None  # raised outside Omni code


def test_an_interrupt_wrapped_by_a_library_is_still_130(capsys, monkeypatch):
    """torch (and others) may turn Ctrl-C into an error of their own: still one line, exit 130."""
    from omni_data.cli import datasets

    def interrupted_inside_a_library() -> list[dict]:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("DataLoader worker (pid 123) exited unexpectedly") from None

    monkeypatch.setattr(datasets, "rows", interrupted_inside_a_library)
    assert data_cli.main(["datasets"]) == 130
    assert capsys.readouterr().err == "omni-data datasets: interrupted\n"  # it leaves nothing to resume


RESUMES = "interrupted; re-run the same command to resume"


@pytest.mark.parametrize(
    ("command", "argv", "target", "line"),
    [
        (
            "ingest",
            ["{src}", "--out", "{tmp}/st", "--dataset", "d", "--task", "t", "--no-cluster"],
            "omni_data.pipeline.request.run_ingest",
            RESUMES,
        ),
        ("download", ["mptrj", "--out", "{tmp}/dl", "--no-progress"], "omni_data.cli.download.fetch_manifest", RESUMES),
        (
            "dedup",
            ["{store}", "--no-cluster"],
            "omni_data.harmonize.dedup.hash_stores",
            "interrupted; if --out was given, remove that incomplete store before re-running",
        ),
        (
            "report",
            ["{store}", "--out", "{tmp}/rep", "--no-cluster"],
            "omni_data.report.html.build_report",
            "interrupted",
        ),
        ("datasets", [], "omni_data.cli.datasets.rows", "interrupted"),
    ],
)
def test_ctrl_c_says_resume_only_where_a_rerun_resumes(command, argv, target, line, tmp_path, capsys, monkeypatch):
    """Before: every command said "re-run the same command to resume", true only of some."""
    from omni_data.store.testing import write_extxyz

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    store = tmp_path / "store"
    write_shard(store, "s0", emt_records(2, seed=5))
    src = write_extxyz(emt_records(2, seed=6), tmp_path / "src.extxyz")
    args = [a.format(tmp=tmp_path, store=store, src=src) for a in argv]
    assert data_cli.main([command, *args]) == 130
    assert capsys.readouterr().err == f"omni-data {command}: {line}\n"
