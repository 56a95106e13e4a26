"""Running one demo stage: time it, send its chatter to a log file, and record what happened.

A stage whose code is not in this checkout yet (its module cannot be imported) is reported as
``unavailable`` with the missing module named, never faked; stages that need it are ``skipped``
with the reason. A stage that raises or whose command exits non-zero is ``failed``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence


class StageUnavailable(RuntimeError):
    """A part of Omni this stage calls is not present (yet)."""


class StageFailed(RuntimeError):
    """A command of this stage exited non-zero or produced inconsistent output."""


@dataclass
class StageResult:
    name: str
    status: str  # ok | unavailable | failed | skipped
    seconds: float = 0.0
    detail: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)


def require(module: str) -> Any:
    """Import ``module`` or raise ``StageUnavailable`` naming it (and what is missing inside)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise StageUnavailable(f"{module} is not available ({exc})") from exc


def cluster_args(workers: int) -> list[str]:
    """Pipeline-command options for ``workers``: in-process for 1, a local Dask cluster above."""
    return ["--no-cluster"] if workers <= 1 else ["--workers", str(workers)]


def omni_data_cli(argv: Sequence[str], ok_codes: Sequence[int] = (0,)) -> int:
    """Run one ``omni-data`` command in this process through its command module; returns its status."""
    from omni_data.cli.main import COMMANDS

    name = argv[0]
    module = require(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"omni-data {name}")
    module.add_arguments(parser)
    args = parser.parse_args([str(a) for a in argv[1:]])
    print(f"$ omni-data {' '.join(str(a) for a in argv)}", flush=True)
    from omni_data.cli.errors import run_guarded

    rc = run_guarded(f"omni-data {name}", lambda: module.run(args))  # the CLI's own error policy
    if rc not in ok_codes:
        raise StageFailed(f"omni-data {' '.join(str(a) for a in argv)} exited with status {rc}")
    return rc


class _StageStream(io.TextIOBase):
    """sys.stdout/sys.stderr during a stage: writes go to the current stage's log file.

    One object for the whole demo, so a logging handler that a library binds to ``sys.stderr``
    during one stage (``logging.basicConfig``, dask's loggers) writes to whichever stage runs
    later, and to the real stderr after the demo, never to a closed file.
    """

    def __init__(self, fallback: Any):
        self.fallback = fallback
        self.target = fallback

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.target.fileno()


class StageRunner:
    """Runs stages in order, logging each to ``logs/<stage>.log`` and ``stages.json``."""

    def __init__(self, logs: Path, record: Path, echo: Callable[[str], None] = print):
        self.logs = Path(logs)
        self.record = Path(record)
        self.results: dict[str, StageResult] = {}
        self.echo = echo
        self.logs.mkdir(parents=True, exist_ok=True)
        self.stream = _StageStream(sys.__stderr__)

    def ok(self, name: str) -> bool:
        return name in self.results and self.results[name].status == "ok"

    def run(self, name: str, fn: Callable[[], dict[str, Any] | None], needs: Sequence[str] = ()) -> StageResult:
        """Run ``fn`` unless a stage it needs did not succeed; never raises for stage errors."""
        missing = [n for n in needs if not self.ok(n)]
        if missing:
            why = "; ".join(f"{n}: {self.results[n].status}" if n in self.results else f"{n}: not run" for n in missing)
            result = StageResult(name, "skipped", detail=f"needs {why}")
        else:
            log = self.logs / f"{name}.log"
            t0 = time.perf_counter()
            with open(log, "w", encoding="utf-8", buffering=1) as fh:
                self.stream.target = fh
                try:
                    with contextlib.redirect_stdout(self.stream), contextlib.redirect_stderr(self.stream):
                        outputs = fn() or {}
                    result = StageResult(name, "ok", outputs=outputs)
                except StageUnavailable as exc:
                    result = StageResult(name, "unavailable", detail=str(exc))
                except Exception as exc:  # any failure: keep the traceback in the log
                    traceback.print_exc(file=fh)
                    result = StageResult(name, "failed", detail=f"{type(exc).__name__}: {exc} (log: {log})")
                finally:
                    self.stream.target = self.stream.fallback
            result.seconds = round(time.perf_counter() - t0, 1)
        self.results[name] = result
        self.echo(f"[demo] {name:<18} {result.status:<11} {result.seconds:>7.1f}s  {result.detail}".rstrip())
        self._save()
        return result

    def _save(self) -> None:
        tmp = self.record.with_name(f".{self.record.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in self.results.items()}, indent=2, default=str))
        os.replace(tmp, self.record)


def echo_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
