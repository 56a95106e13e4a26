"""Batch scripts for VASP recompute jobs: one array job, a chunk of job dirs per array task.

The script is rendered as text (tested as text and with ``bash -n``, like dask-jobqueue's
tests). Each array task takes ``per_task`` consecutive lines of the job list, skips dirs that are
finished (DONE marker, or a vasprun.xml closed with ``</modeling>``), runs the user's VASP command
in each other dir, writes DONE or FAILED (with the reason) and appends every failure to a
failures file (TSV: dir, array task, exit code, reason). SIGTERM (Slurm's time limit) marks the
dir being run as failed. Every user-supplied value in the shell body goes through
``shlex.quote``; ``#SBATCH``/``#PBS`` directive values are checked against a safe alphabet.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from omni_data.recompute import jobs

__all__ = [
    "BatchOptions",
    "slurm_header",
    "pbs_header",
    "render",
    "joblist_of",
    "write_batch",
    "render_pipeline_script",
    "local_run_command",
    "default_command",
    "run_job_here",
    "main",
]

SCHEDULERS: tuple[str, ...] = ("slurm", "pbs")
BATCH_STATES: tuple[str, ...] = ("pending", "failed", "stale")
"""Job states a batch script runs: not started, failed, and left behind by a run that is gone
(a RUNNING marker whose local pid is dead, ``jobs.with_liveness``)."""
_DIRECTIVE_VALUE = re.compile(r"^[A-Za-z0-9_.:,@%=+/-]+$")


@dataclass
class BatchOptions:
    """What the batch script needs; ``vasp_cmd`` is the user's command, e.g. ``srun vasp_std``."""

    vasp_cmd: str
    per_task: int = 1
    job_name: str = "omni-recompute"
    time: str = "24:00:00"
    partition: str | None = None
    account: str | None = None
    nodes: int = 1
    ntasks_per_node: int | None = None
    max_parallel: int | None = None
    extra: list[str] = field(default_factory=list)  # raw directives, e.g. "--qos=normal"


def _directive(name: str, value: object) -> str:
    text = str(value)
    if not _DIRECTIVE_VALUE.match(text):
        raise ValueError(f"batch option {name}={text!r}: only letters, digits and _.:,@%=+/- are allowed")
    return text


_EXTRA = re.compile(r"^--?[A-Za-z][A-Za-z0-9-]*(=[A-Za-z0-9_.:,@%=+/-]+)?$")


def _extra(item: str) -> str:
    if not _EXTRA.match(item):
        raise ValueError(f"extra batch directive {item!r}: expected one token like --qos=normal")
    return item


def slurm_header(opts: BatchOptions, n_tasks: int) -> list[str]:
    array = f"0-{n_tasks - 1}" + (f"%{int(opts.max_parallel)}" if opts.max_parallel else "")
    lines = [
        f"#SBATCH --job-name={_directive('job_name', opts.job_name)}",
        f"#SBATCH --array={array}",
        f"#SBATCH --time={_directive('time', opts.time)}",
        f"#SBATCH --nodes={int(opts.nodes)}",
        "#SBATCH --output=logs/slurm-%A_%a.out",  # relative: submit from the jobs dir
    ]
    if opts.ntasks_per_node:
        lines.append(f"#SBATCH --ntasks-per-node={int(opts.ntasks_per_node)}")
    if opts.partition:
        lines.append(f"#SBATCH --partition={_directive('partition', opts.partition)}")
    if opts.account:
        lines.append(f"#SBATCH --account={_directive('account', opts.account)}")
    lines += [f"#SBATCH {_extra(x)}" for x in opts.extra]
    return lines


def pbs_header(opts: BatchOptions, n_tasks: int) -> list[str]:
    select = f"select={int(opts.nodes)}" + (f":mpiprocs={int(opts.ntasks_per_node)}" if opts.ntasks_per_node else "")
    lines = [
        f"#PBS -N {_directive('job_name', opts.job_name)}",
        f"#PBS -J 0-{max(1, n_tasks - 1)}",  # PBS Pro needs a range of >= 2 indices
        f"#PBS -l walltime={_directive('time', opts.time)}",
        f"#PBS -l {select}",
        "#PBS -o logs/",
        "#PBS -j oe",
    ]
    if opts.partition:
        lines.append(f"#PBS -q {_directive('partition', opts.partition)}")
    if opts.account:
        lines.append(f"#PBS -A {_directive('account', opts.account)}")
    lines += [f"#PBS {_extra(x)}" for x in opts.extra]
    return lines


_PRELUDE_RENDERED = r"""
set -u
JOBLIST=__JOBLIST__
FAILURES=__FAILURES__
VASP_CMD=__VASP_CMD__
PER_TASK=__PER_TASK__
TASK_ID="${SLURM_ARRAY_TASK_ID:-${PBS_ARRAY_INDEX:-0}}"
START=$(( TASK_ID * PER_TASK ))
mapfile -t DIRS < <(tail -n "+$(( START + 1 ))" "$JOBLIST" | head -n "$PER_TASK")
"""

# The pipeline script (pipelines/slurm/vasp_array.sbatch) takes everything from the environment
# and lists every job dir itself, sorted, so all array tasks agree on the chunks without a file.
_PRELUDE_ENV = r"""
set -u
JOBS_DIR="${OMNI_JOBS_DIR:?set OMNI_JOBS_DIR to the emit-jobs output directory}"
VASP_CMD="${OMNI_VASP_CMD:?set OMNI_VASP_CMD to the command that runs VASP in a job dir}"
PER_TASK="${OMNI_JOBS_PER_TASK:-1}"
FAILURES="${OMNI_FAILURES:-${JOBS_DIR}/failures.tsv}"
if [ -n "${OMNI_ENV:-}" ]; then source "${OMNI_ENV}"; fi
TASK_ID="${SLURM_ARRAY_TASK_ID:-${PBS_ARRAY_INDEX:-0}}"
START=$(( TASK_ID * PER_TASK ))
mapfile -t DIRS < <(find "$JOBS_DIR" -mindepth 2 -maxdepth 2 -name job.json -printf '%h\n' \
    | grep -v '/\.[^/]*$' | LC_ALL=C sort | tail -n "+$(( START + 1 ))" | head -n "$PER_TASK")
"""

_LOOP = r"""CURRENT=""
CHILD=""

record_failure() {  # dir, exit code, reason
    printf '%s\n' "$3" > "$1/FAILED"
    rm -f "$1/RUNNING" "$1/DONE"
    printf '%s\t%s\t%s\t%s\n' "$1" "$TASK_ID" "$2" "$3" >> "$FAILURES"
}

on_term() {
    if [ -n "$CHILD" ]; then kill -TERM "$CHILD" 2>/dev/null; fi
    if [ -n "$CURRENT" ]; then record_failure "$CURRENT" 143 "run:killed by SIGTERM (time limit or scancel); batch job ${SLURM_JOB_ID:-${PBS_JOBID:-?}} array ${SLURM_ARRAY_JOB_ID:-?}_${TASK_ID}"; fi
    exit 143
}
trap on_term TERM INT

vasprun_complete() {
    [ -f "$1/vasprun.xml" ] && tail -c 256 "$1/vasprun.xml" | grep -q '</modeling>'
}

for dir in "${DIRS[@]}"; do
    [ -n "$dir" ] || continue
    if [ ! -d "$dir" ]; then
        printf '%s\t%s\t%s\t%s\n' "$dir" "$TASK_ID" "-" "missing:job directory not found" >> "$FAILURES"
        continue
    fi
    if [ -f "$dir/DONE" ] || { [ ! -f "$dir/FAILED" ] && vasprun_complete "$dir"; }; then
        echo "skip (finished): $dir"
        [ -f "$dir/DONE" ] || date -u +%FT%T > "$dir/DONE"
        continue
    fi
    rm -f "$dir/FAILED"
    printf '%s job %s task %s since %s\n' "$(hostname)" "${SLURM_JOB_ID:-${PBS_JOBID:-local}}" "$TASK_ID" "$(date -u +%FT%T)" > "$dir/RUNNING"
    CURRENT="$dir"
    ( cd "$dir" && exec bash -c "$VASP_CMD" ) > "$dir/vasp.out" 2> "$dir/vasp.err" &
    CHILD=$!
    wait "$CHILD"
    rc=$?
    CURRENT=""
    CHILD=""
    if [ -f "$dir/FAILED" ]; then  # the command recorded its own failure (the local runners do)
        printf '%s\t%s\t%s\t%s\n' "$dir" "$TASK_ID" "$rc" "$(head -n 1 "$dir/FAILED")" >> "$FAILURES"
    elif [ "$rc" -ne 0 ]; then
        record_failure "$dir" "$rc" "run:VASP command exited with code $rc"
    elif [ -f "$dir/DONE" ]; then  # the command recorded its own result (the local runners do)
        rm -f "$dir/RUNNING"
    elif ! vasprun_complete "$dir"; then
        record_failure "$dir" "$rc" "run:vasprun.xml missing or incomplete after VASP exited"
    else
        date -u +%FT%T > "$dir/DONE"
        rm -f "$dir/RUNNING"
    fi
done
"""


def render(job_dirs: list[Path], joblist: Path, failures: Path, opts: BatchOptions, scheduler: str = "slurm") -> str:
    """The batch script text for ``job_dirs`` (already written to ``joblist``, one per line)."""
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; known: {', '.join(SCHEDULERS)}")
    if opts.per_task < 1:
        raise ValueError(f"per_task must be >= 1, got {opts.per_task}")
    if not opts.vasp_cmd.strip():
        raise ValueError("vasp_cmd is empty; pass the command that runs VASP, e.g. 'srun vasp_std'")
    n_tasks = max(1, math.ceil(len(job_dirs) / opts.per_task))
    header = (slurm_header if scheduler == "slurm" else pbs_header)(opts, n_tasks)
    body = (
        _PRELUDE_RENDERED.replace("__JOBLIST__", shlex.quote(str(Path(joblist).resolve())))
        .replace("__FAILURES__", shlex.quote(str(Path(failures).resolve())))
        .replace("__VASP_CMD__", shlex.quote(opts.vasp_cmd))
        .replace("__PER_TASK__", str(int(opts.per_task)))
    ) + _LOOP
    intro = [
        f"# omni recompute: {len(job_dirs)} job dirs, {opts.per_task} per array task, {n_tasks} tasks",
        "# submit from the jobs directory (logs/ is relative to it)",
    ]
    return "\n".join(["#!/bin/bash", *header, *intro]) + "\n" + body


def joblist_of(script: Path) -> Path:
    """The job list a rendered script reads (its ``JOBLIST=`` line)."""
    for line in Path(script).read_text().splitlines():
        if line.startswith("JOBLIST="):
            return Path(shlex.split(line[len("JOBLIST=") :])[0])
    raise ValueError(f"{script}: no JOBLIST= line; not a rendered recompute script")


def write_batch(
    root: Path, opts: BatchOptions, scheduler: str = "slurm", states: tuple[str, ...] = BATCH_STATES
) -> tuple[Path, int]:
    """Write a job list (dirs in ``states``) and ``submit.<scheduler>`` under ``root``.

    The list is ``joblists/<time>-<pid>.txt``, a new file per script, so re-writing the script
    while an earlier array still runs cannot shift that array's chunks.

    Returns (script path, number of job dirs listed). Finished and running jobs are left out, so
    re-writing after a partial run submits only what is left; a stale job (its run was
    interrupted, ``BATCH_STATES``) is listed again."""
    root = Path(root).resolve()
    dirs = [s.path.resolve() for s in jobs.summarize(root) if s.state in states]
    for d in dirs:
        if "\n" in str(d):
            raise ValueError(f"{d!r}: a job dir path with a newline cannot go in the job list")
    (root / "joblists").mkdir(exist_ok=True)
    joblist = root / "joblists" / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}.txt"
    jobs.write_text_atomic(joblist, "".join(f"{d}\n" for d in dirs))
    (root / "logs").mkdir(exist_ok=True)
    text = render(dirs, joblist, root / "failures.tsv", opts, scheduler)
    script = root / f"submit.{scheduler}"
    jobs.write_text_atomic(script, text)
    script.chmod(0o755)
    return script, len(dirs)


PIPELINE_SCRIPT = "pipelines/slurm/vasp_array.sbatch"


def render_pipeline_script() -> str:
    """``pipelines/slurm/vasp_array.sbatch``: the same loop, configured by environment variables.

    ``OMNI_JOBS_DIR``, ``OMNI_VASP_CMD``, ``OMNI_JOBS_PER_TASK`` (default 1), ``OMNI_FAILURES``
    (default DIR/failures.tsv), ``OMNI_ENV`` (a file to source). The array range, partition and
    log path come from the sbatch command line (see pipelines/run_corpus.sh,
    pipelines/slurm/submit_vasp_jobs.sh). Regenerate with ``python -m omni_data.recompute.slurm``."""
    header = [
        "#!/bin/bash",
        "# VASP array for Omni recompute jobs: array task i runs job dirs [i*PER, (i+1)*PER) of the",
        "# sorted job dirs under $OMNI_JOBS_DIR; finished dirs (DONE / closed vasprun.xml) are skipped,",
        "# failures get a FAILED marker and a line in $OMNI_FAILURES (dir, task, exit code, reason).",
        "# GENERATED by `python -m omni_data.recompute.slurm` from omni_data/recompute/slurm.py: edit there.",
        "#SBATCH --job-name=omni-vasp",
        "#SBATCH --nodes=1",
        "#SBATCH --time=24:00:00",
    ]
    return "\n".join(header) + "\n" + _PRELUDE_ENV + _LOOP


def local_run_command() -> str:
    """The batch-script command that runs one local-engine job (xTB, PySCF) in its job dir.

    It is this interpreter (the environment that wrote the script, as on a shared file system)
    running ``python -m omni_data.recompute.slurm run-job .``; the runner writes DONE or FAILED
    itself, which the array loop keeps."""
    return f"{shlex.quote(sys.executable)} -m omni_data.recompute.slurm run-job ."


def default_command(root: Path, states: tuple[str, ...] = BATCH_STATES) -> str:
    """The command for a batch script over ``root`` when the user gave none.

    Jobs of local engines (tblite, PySCF) get ``local_run_command()``; VASP jobs need the site's
    VASP command, so a ValueError says to pass ``--vasp-cmd``."""
    from omni_data.recompute.runners import RUNNERS

    engines = {str((s.job or {}).get("engine")) for s in jobs.summarize(root) if s.state in states}
    other = sorted(engines - set(RUNNERS))
    if other:
        raise ValueError(
            f"jobs of engine {', '.join(other)} need --vasp-cmd (the command that runs it in a job dir, "
            "e.g. 'srun vasp_std')"
        )
    return local_run_command()


def run_job_here(job_dir: Path) -> int:
    """Run one local-engine job dir in this process (a batch array task); 0 when done, else 1.

    Threads: ``SLURM_CPUS_PER_TASK`` (or ``OMP_NUM_THREADS``, else 1)."""
    from omni_data.recompute.local import run_job

    threads = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("OMP_NUM_THREADS") or 1)
    result = run_job(Path(job_dir).resolve(), threads=threads)
    print(f"{result['job']}: {result['state']} {result['reason']}".rstrip())
    return 0 if result["state"] == "done" else 1


def main(argv: list[str]) -> int:
    """``python -m omni_data.recompute.slurm``: regenerate the pipeline script in a checkout;
    ``... run-job DIR``: run one local-engine job dir (what the batch script calls)."""
    if argv[:1] == ["run-job"] and len(argv) == 2:
        return run_job_here(Path(argv[1]))
    if argv:
        print("usage: python -m omni_data.recompute.slurm [run-job DIR]", file=sys.stderr)
        return 2
    target = Path(__file__).resolve().parents[2] / PIPELINE_SCRIPT
    jobs.write_text_atomic(target, render_pipeline_script())
    target.chmod(0o755)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
