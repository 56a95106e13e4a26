"""A real full disk for the disk-full tests: a small tmpfs mounted for one test, then filled.

``small_filesystem`` skips the test only where mounting is not permitted (not root, no ``mount``,
or the kernel refuses it for lack of privilege); any other mount failure is an error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

_NOT_PERMITTED = ("permission denied", "operation not permitted", "must be superuser", "only root")


@contextlib.contextmanager
def small_filesystem(folder: Path, size: str = "8m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``folder`` for the duration; yields ``folder``."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs is not permitted here (needs root and mount)")
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        if any(text in proc.stderr.lower() for text in _NOT_PERMITTED):
            pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.strip()}")
        raise RuntimeError(f"mount -t tmpfs {folder} failed: {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True, capture_output=True)


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def fill(folder: Path, leave: int = 0) -> Path:
    """Take all but ``leave`` bytes of ``folder``'s filesystem with a filler file; returns it."""
    filler = folder / "filler.bin"
    with open(filler, "ab") as fh:
        fh.write(b"\0" * max(free_bytes(folder) - leave, 0))
    assert abs(free_bytes(folder) - leave) <= 4096, (free_bytes(folder), leave)
    return filler
