"""Running one demo stage: time it, send its chatter to a log file, record what happened, and
skip it when it already finished on the same inputs (``omni_model.demo.ledger``).

A stage whose code is not in this checkout (its module cannot be imported) is reported as
``unavailable`` with the missing module named, never faked; stages that need it are ``skipped``
with the reason. A stage that raises is ``failed``. A stage reused from an earlier run is ``ok``
with ``reused`` set.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omni_model.demo.ledger import StageLedger, fingerprint, new_token

__all__ = [
    "StageUnavailable",
    "StageFailed",
    "StageResult",
    "ParallelStage",
    "require",
    "cluster_config",
    "clear",
    "StageRunner",
]


class StageUnavailable(RuntimeError):
    """A part of Omni this stage calls is not present (yet)."""


class StageFailed(RuntimeError):
    """A step of this stage failed or produced inconsistent output."""


@dataclass
class StageResult:
    name: str
    status: str  # ok | unavailable | failed | skipped
    seconds: float = 0.0
    detail: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    reused: bool = False  # finished in an earlier run on the same inputs; not run again


@dataclass(frozen=True)
class ParallelStage:
    """One stage for ``StageRunner.run_parallel``: ``run``'s arguments, ``fn`` picklable."""

    name: str
    fn: Callable[..., dict[str, Any] | None]
    needs: Sequence[str] = ()
    options: Mapping[str, Any] | None = None
    inputs: Sequence[str] | None = None
    owns: Sequence[Path] = ()
    resumable: bool = False


def _outcome(name: str, call: Callable[[], dict[str, Any] | None], fh: Any, out: Any, log: Path | str) -> StageResult:
    """Run one stage with its output sent to ``out``; a failure's traceback goes to ``fh`` (its log)."""
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            return StageResult(name, "ok", outputs=call() or {})
    except StageUnavailable as exc:
        return StageResult(name, "unavailable", detail=str(exc))
    except Exception as exc:  # any failure: keep the traceback in the log
        traceback.print_exc(file=fh)
        return StageResult(name, "failed", detail=f"{type(exc).__name__}: {exc} (log: {log})")


def _execute_in_child(name: str, fn: Callable[..., dict[str, Any] | None], log: str) -> StageResult:
    """``StageRunner._execute`` in a pool process: output to ``log``, progress lines also to the console."""
    console = sys.__stderr__
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8", buffering=1) as fh:

        def progress(text: str) -> None:
            print(text, file=fh, flush=True)
            if console is not None:
                print(text, file=console, flush=True)

        try:
            result = _outcome(name, lambda: fn(progress=progress), fh, fh, log)
        except KeyboardInterrupt:  # Ctrl-C reaches every process: the parent reports it once
            result = StageResult(name, "failed", detail="interrupted")
    result.seconds = round(time.perf_counter() - t0, 1)
    return result


def require(module: str) -> Any:
    """Import ``module`` or raise ``StageUnavailable`` naming it (and what is missing inside)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise StageUnavailable(f"{module} is not available ({exc})") from exc


def cluster_config(workers: int) -> Any:
    """The Dask setup for ``workers``: in this process for 1, a local cluster of that many above."""
    from omni_data.pipeline.cluster import ClusterConfig

    return ClusterConfig(mode="sync") if workers <= 1 else ClusterConfig(mode="local", workers=workers)


def clear(paths: Sequence[Path]) -> None:
    """Remove files and folders (a stage's outputs before it runs on new inputs)."""
    for path in paths:
        path = Path(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


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
    """Runs stages in order, logging each to ``logs/<stage>.log``, this run's results to
    ``stages.json`` and what finished on which inputs to the ledger (``ledger.json``)."""

    def __init__(self, logs: Path, record: Path, echo: Callable[[str], None] | None = None, ledger: Path | None = None):
        self.logs = Path(logs)
        self.record = Path(record)
        self.results: dict[str, StageResult] = {}
        self.tokens: dict[str, str] = {}  # stage -> output token of its outputs in this folder
        self.console = sys.stderr  # the terminal, captured before any stage redirects sys.stderr
        self.echo = echo or self._to_console
        self.logs.mkdir(parents=True, exist_ok=True)
        self.ledger = StageLedger(ledger if ledger is not None else self.record.with_name("ledger.json"))
        self.stream = _StageStream(sys.__stderr__)

    def _to_console(self, text: str) -> None:
        print(text, file=self.console, flush=True)

    def say(self, text: str) -> None:
        """A line for the user while a stage runs (training progress): the console and the stage log."""
        self.echo(text)
        if self.stream.target is not self.stream.fallback:
            print(text, file=self.stream.target, flush=True)

    def ok(self, name: str) -> bool:
        return name in self.results and self.results[name].status == "ok"

    def run(
        self,
        name: str,
        fn: Callable[[], dict[str, Any] | None],
        needs: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        inputs: Sequence[str] | None = None,
        owns: Sequence[Path] = (),
        resumable: bool = False,
    ) -> StageResult:
        """Run ``fn`` unless a stage it needs did not succeed or it already finished on the same
        inputs; never raises for stage errors (Ctrl-C passes through, leaving it ``running``).

        ``options`` and the output tokens of ``inputs`` (default ``needs``) make the stage's
        fingerprint. ``owns``: the paths it writes; they must exist for a reuse, and are removed
        before it runs again, unless ``resumable`` and its last attempt on the same inputs was
        cut short (then ``fn`` continues what is there).
        """
        plan = self._plan(name, needs, options, inputs, owns, resumable)
        if isinstance(plan, StageResult):
            return self._finish(plan)
        return self._record(name, plan, self._execute(name, fn))

    def run_parallel(self, stages: Sequence[ParallelStage], workers: int) -> list[StageResult]:
        """Run independent stages, up to ``workers`` at a time in fresh processes (in this
        process, in order, for ``workers`` <= 1); reuse and skip exactly as ``run``.

        Each stage's ``fn`` must be picklable (a module-level function or a partial of one)
        and accept ``progress``: a callable that gets lines for the console; the child's
        output goes to ``logs/<stage>.log``. Results are recorded as each stage ends.
        """
        if workers <= 1:
            return [
                self.run(
                    s.name,
                    functools.partial(s.fn, progress=self.say),
                    s.needs,
                    s.options,
                    s.inputs,
                    s.owns,
                    s.resumable,
                )
                for s in stages
            ]
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        results: dict[str, StageResult] = {}
        todo: dict[str, tuple[ParallelStage, str]] = {}
        for s in stages:
            plan = self._plan(s.name, s.needs, s.options, s.inputs, s.owns, s.resumable)
            if isinstance(plan, StageResult):
                results[s.name] = self._finish(plan)
            else:
                todo[s.name] = (s, plan)
        if todo:
            pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"))
            try:
                futures = {
                    pool.submit(_execute_in_child, name, s.fn, str(self.logs / f"{name}.log")): name
                    for name, (s, _) in todo.items()
                }
                for fut in as_completed(futures):
                    name = futures[fut]
                    results[name] = self._record(name, todo[name][1], fut.result())
            finally:  # Ctrl-C: stages not started never start; those running stop (they see it too)
                pool.shutdown(wait=True, cancel_futures=True)
        return [results[s.name] for s in stages]

    def _plan(
        self,
        name: str,
        needs: Sequence[str],
        options: Mapping[str, Any] | None,
        inputs: Sequence[str] | None,
        owns: Sequence[Path],
        resumable: bool,
    ) -> StageResult | str:
        """The stage's result when it is skipped or reused; else its fingerprint, outputs cleared
        (unless resumable and cut short), marked ``running`` in the ledger."""
        missing = [n for n in needs if not self.ok(n)]
        if missing:
            why = "; ".join(f"{n}: {self.results[n].status}" if n in self.results else f"{n}: not run" for n in missing)
            return StageResult(name, "skipped", detail=f"needs {why}")
        fp = fingerprint(
            name, options or {}, {n: self.tokens.get(n, "") for n in (needs if inputs is None else inputs)}
        )
        entry = self.ledger.get(name)
        if entry is not None and self.ledger.is_done(name, fp) and all(Path(p).exists() for p in owns):
            self.tokens[name] = entry.token
            return StageResult(
                name, "ok", entry.seconds, "reused: finished earlier on the same inputs", entry.outputs, reused=True
            )
        if not (resumable and self.ledger.interrupted(name, fp)):
            clear(owns)
        self.ledger.mark(name, fp, "running")
        return fp

    def _record(self, name: str, fp: str, result: StageResult) -> StageResult:
        self.tokens[name] = new_token()  # what reads this stage's outputs runs again
        self.ledger.mark(
            name, fp, "done" if result.status == "ok" else "failed", result.outputs, result.seconds, self.tokens[name]
        )
        return self._finish(result)

    def _execute(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> StageResult:
        log = self.logs / f"{name}.log"
        t0 = time.perf_counter()
        with open(log, "w", encoding="utf-8", buffering=1) as fh:
            self.stream.target = fh
            try:
                result = _outcome(name, fn, fh, self.stream, log)
            finally:
                self.stream.target = self.stream.fallback
        result.seconds = round(time.perf_counter() - t0, 1)
        return result

    def _finish(self, result: StageResult) -> StageResult:
        self.results[result.name] = result
        status = "ok (reused)" if result.reused else result.status
        detail = "" if result.reused else result.detail
        self.echo(f"[demo] {result.name:<18} {status:<11} {result.seconds:>7.1f}s  {detail}".rstrip())
        self._save()
        return result

    def _save(self) -> None:
        tmp = self.record.with_name(f".{self.record.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in self.results.items()}, indent=2, default=str))
        os.replace(tmp, self.record)
