"""One error policy for ``omni-data`` and ``omni-train`` (issue 20, item 2).

Every ``main()`` runs a command through :func:`run_guarded`, which turns the project's errors
into one line ``PROG CMD: error: MESSAGE`` on stderr and an exit status:

====  =========================================================================================
2     usage: a bad argument (argparse), a bad value the library rejects (``ValueError`` raised by
      Omni code: ``ManifestError``, ``ProtocolError``, a train config, ``--fraction 2``)
1     runtime: the operating system (``OSError``: a missing, unreadable or full path), a reader,
      download, recompute or demo failure (``RuntimeError`` subclasses defined by Omni), a
      missing optional dependency (``ModuleNotFoundError``); a ``ValueError`` inside
      :func:`runtime_phase` (bad data met while working: a refused archive, a damaged shard)
130   interrupted (Ctrl-C), also when a library turned the ``KeyboardInterrupt`` into an error
      of its own (``caused_by_interrupt``)
====  =========================================================================================

Anything else (``TypeError``, ``KeyError``, a plain ``RuntimeError`` from torch, ...) is a bug:
its traceback is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

__all__ = [
    "UsageError",
    "CommandFailed",
    "runtime_phase",
    "must_exist",
    "OneLineParser",
    "exit_status",
    "caused_by_interrupt",
    "one_line",
    "run_guarded",
]

USAGE, RUNTIME, INTERRUPTED = 2, 1, 130
OMNI_PACKAGES = ("omni_data", "omni_model")


class UsageError(ValueError):
    """A command line argparse rejected (raised instead of argparse's usage text and exit)."""


class CommandFailed(RuntimeError):
    """A command's work failed (exit 1); raised by :func:`runtime_phase`."""


@contextlib.contextmanager
def runtime_phase(what: str = "") -> Iterator[None]:
    """Inside, a ValueError or OSError is a runtime failure (exit 1), its message prefixed ``what: ``.

    Outside such a phase a ValueError means the user's input was rejected (exit 2)."""
    try:
        yield
    except (ValueError, OSError) as exc:
        text = one_line(exc)
        raise CommandFailed(f"{what}: {text}" if what else text) from exc


def must_exist(path: Path, what: str, folder: bool = False) -> Path:
    """``path``, or FileNotFoundError / NotADirectoryError (exit 1) naming it as ``what``."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: {what} does not exist")
    if folder and not Path(path).is_dir():
        raise NotADirectoryError(f"{path}: {what} is not a folder")
    return path


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` so ``main`` prints one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _is_omni(module: str) -> bool:
    return module.split(".")[0] in OMNI_PACKAGES


def _raised_by_omni(exc: BaseException) -> bool:
    """True when ``exc``'s type is an Omni type or its innermost frame is in Omni code."""
    if _is_omni(type(exc).__module__):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and _is_omni(str(tb.tb_frame.f_globals.get("__name__", "")))


def exit_status(exc: BaseException) -> int | None:
    """The exit status for an error the user can act on, or None for a bug (keep its traceback)."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, OSError):
        return RUNTIME
    if isinstance(exc, ModuleNotFoundError):
        return RUNTIME
    if isinstance(exc, ValueError) and getattr(exc, "runtime", False):
        return RUNTIME  # e.g. store.lmdb.ShardError: a damaged file met while working
    if isinstance(exc, ValueError) and _raised_by_omni(exc):
        return USAGE
    if isinstance(exc, RuntimeError) and not isinstance(exc, (NotImplementedError, RecursionError)):
        return RUNTIME if _is_omni(type(exc).__module__) else None
    return None


def caused_by_interrupt(exc: BaseException) -> bool:
    """True when ``exc`` was raised while handling Ctrl-C (a library turned the
    ``KeyboardInterrupt`` into its own error, e.g. torch's ``RuntimeError``)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (its type name when the message is empty)."""
    text = " ".join(line for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def run_guarded(prog: str, command: Callable[[], int | None], interrupted: str = "interrupted") -> int:
    """Run ``command`` and return its status; a user-facing error is printed as one line."""
    try:
        return int(command() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return INTERRUPTED
    except SystemExit as exc:  # --help, --version
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        print(f"{prog}: error: {exc.code}", file=sys.stderr)
        return RUNTIME
    except Exception as exc:
        if caused_by_interrupt(exc):
            print(f"{prog}: {interrupted}", file=sys.stderr)
            return INTERRUPTED
        status = exit_status(exc)
        if status is None:
            raise
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return status
