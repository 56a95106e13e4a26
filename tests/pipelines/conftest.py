"""A real one-node Slurm for the pipeline tests (pipelines/slurm/testbed/omni_slurm_testbed.sh).

``slurm_testbed`` (session) starts munged, slurmctld and slurmd under a temp dir, sets
``SLURM_CONF`` for this process (dask-jobqueue calls sbatch from here) and for every subprocess,
and stops exactly those daemons at the end. Where Slurm cannot be installed or started (not
root, no apt-get, no network) the tests that use it are skipped with the reason; with
``OMNI_REQUIRE_EXTRAS=1`` (CI) they fail instead. ``OMNI_SLURM_TESTBED=DIR`` reuses a testbed
already started in DIR (CI starts one so that it can stop it even when pytest is killed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / "pipelines" / "slurm" / "testbed" / "omni_slurm_testbed.sh"
NOT_INSTALLABLE = 3  # the script's exit code when Slurm is missing and cannot be installed here


@dataclass(frozen=True)
class SlurmTestbed:
    """A running one-node Slurm: its directory, config file, and an environment for clients."""

    root: Path
    conf: Path

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ with SLURM_CONF, this Python's bin dir first on PATH, one thread per process."""
        env = dict(
            os.environ, SLURM_CONF=str(self.conf), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"
        )
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env


def _unavailable(reason: str) -> None:
    if os.environ.get("OMNI_REQUIRE_EXTRAS") == "1":
        pytest.fail(f"real Slurm testbed required (OMNI_REQUIRE_EXTRAS=1) but unavailable: {reason}")
    pytest.skip(f"no real Slurm here: {reason}")


def _node_idle(conf: Path) -> bool:
    out = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%T"],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, SLURM_CONF=str(conf)),
        check=False,
    )
    return out.returncode == 0 and out.stdout.split()[:1] == ["idle"]


@pytest.fixture(scope="session")
def slurm_testbed() -> Iterator[SlurmTestbed]:
    """A real one-node Slurm for the session (see the module docstring)."""
    reuse = os.environ.get("OMNI_SLURM_TESTBED")
    if reuse:
        bed = SlurmTestbed(Path(reuse), Path(reuse) / "etc" / "slurm.conf")
        if not bed.conf.is_file() or not _node_idle(bed.conf):
            _unavailable(f"OMNI_SLURM_TESTBED={reuse} has no running testbed with an idle node")
        started = False
    else:
        # Short path: munged's socket path must stay under the 108-byte AF_UNIX limit.
        root = Path(os.environ.get("TMPDIR", "/tmp")) / f"omni-slurm-{os.getpid()}"
        try:
            done = subprocess.run(
                [str(TESTBED), "start", str(root)], capture_output=True, text=True, timeout=600, check=False
            )
        except subprocess.TimeoutExpired:
            subprocess.run([str(TESTBED), "stop", str(root)], capture_output=True, timeout=120, check=False)
            _unavailable(f"{TESTBED.name} start did not finish in 600 s")
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit code {done.returncode}"
            _unavailable(f"{TESTBED.name} start failed: {why}")
        bed = SlurmTestbed(root, root / "etc" / "slurm.conf")
        started = True
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(bed.conf)
    try:
        yield bed
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        if started:
            subprocess.run([str(TESTBED), "stop", str(bed.root)], capture_output=True, timeout=120, check=False)
